"""What keeps a running change polite: throttles, lag/activity/load watchers, blockers, maintenance wait."""
