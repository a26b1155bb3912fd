"""change-type, rename-column and drop-column plans: in place when the catalog allows it,
else a shadow column kept in step by a trigger, backfilled, and cut over in one short
transaction."""

from __future__ import annotations

import pytest
from pgonline.strategies._references import ReferencingColumn
from pgonline.strategies.change_type import ChangeTypeArgs, ChangeTypeFacts, plan_change_type
from pgonline.strategies.drop_column import DropColumnArgs, DropColumnFacts, plan_drop_column
from pgonline.strategies.rename_column import (
    RenameColumnArgs,
    RenameColumnFacts,
    plan_rename_column,
)

from pgonline.catalog.column_details import (
    ColumnDetails,
    ColumnIndex,
    Dependent,
    NewTypeFacts,
    OwnedSequence,
    ReferencingKey,
)
from pgonline.catalog.facts import ColumnFacts, TableFacts
from pgonline.errors import CatalogError
from pgonline.registry import recorded_args
from tests.plans.tables import PG18, index

INT4, INT8, TEXT, VARCHAR = 23, 20, 25, 1043

# accounts (id serial PRIMARY KEY, code varchar(50) NOT NULL UNIQUE, ref text), near 2^31 ids
ACCOUNT_ID = ColumnFacts("id", "integer", not_null=True,
                         default="nextval('accounts_id_seq'::regclass)")
ACCOUNT_CODE = ColumnFacts("code", "character varying(50)", not_null=True)
ACCOUNT_REF = ColumnFacts("ref", "text", not_null=False)
ACCOUNTS = TableFacts(
    schema="public", name="accounts", oid=16500,
    columns=(ACCOUNT_ID, ACCOUNT_CODE, ACCOUNT_REF),
    primary_key=("id",), estimated_rows=2_000_000_000, size_bytes=200 * 1024**3,
    indexes=(index("accounts", "accounts_pkey", "id", primary=True),
             index("accounts", "accounts_code_key", "code", unique=True),
             index("accounts", "accounts_ref_idx", "ref")),
)
PKEY = ColumnIndex("public", "accounts_pkey", ACCOUNTS.indexes[0].definition, valid=True,
                   constraint="accounts_pkey", constraint_type="p")
CODE_KEY = ColumnIndex("public", "accounts_code_key", ACCOUNTS.indexes[1].definition, valid=True,
                       constraint="accounts_code_key", constraint_type="u")
REF_IDX = ColumnIndex("public", "accounts_ref_idx", ACCOUNTS.indexes[2].definition, valid=True)

ID_DETAILS = ColumnDetails(
    column=ACCOUNT_ID, attnum=1, type_oid=INT4, typmod=-1,
    dependents=(Dependent("index", "index accounts_pkey", "a"),
                Dependent("primary key", "constraint accounts_pkey on table accounts", "a"),
                Dependent("owned sequence", "sequence accounts_id_seq", "a")),
    indexes=(PKEY,),
    sequence=OwnedSequence("public", "accounts_id_seq", "integer", identity=False),
)
CODE_DETAILS = ColumnDetails(
    column=ACCOUNT_CODE, attnum=2, type_oid=VARCHAR, typmod=50 + 4,
    dependents=(Dependent("index", "index accounts_code_key", "a"),
                Dependent("unique constraint", "constraint accounts_code_key on table accounts",
                          "a")),
    indexes=(CODE_KEY,),
)
REF_DETAILS = ColumnDetails(
    column=ACCOUNT_REF, attnum=3, type_oid=TEXT, typmod=-1,
    dependents=(Dependent("index", "index accounts_ref_idx", "a"),),
    indexes=(REF_IDX,),
)


def test_change_type_widening_varchar_is_one_catalog_only_alter_without_undo(snapshot):
    new = NewTypeFacts("character varying(200)", VARCHAR, 200 + 4, collatable=True,
                       binary_coercible=True)
    plan = plan_change_type(ChangeTypeFacts(PG18, ACCOUNTS, CODE_DETAILS, new),
                            ChangeTypeArgs("code", "varchar(200)"))
    snapshot("change-type-in-place", plan)


def test_change_type_int_to_bigint_on_a_serial_primary_key_moves_key_and_sequence(snapshot):
    new = NewTypeFacts("bigint", INT8, -1, collatable=False, binary_coercible=False)
    plan = plan_change_type(ChangeTypeFacts(PG18, ACCOUNTS, ID_DETAILS, new),
                            ChangeTypeArgs("id", "bigint"))
    snapshot("change-type-shadow-int-to-bigint-primary-key", plan)


def test_change_type_with_using_converts_in_the_trigger_and_the_backfill(snapshot):
    new = NewTypeFacts("integer", INT4, -1, collatable=False, binary_coercible=False)
    plan = plan_change_type(ChangeTypeFacts(PG18, ACCOUNTS, REF_DETAILS, new),
                            ChangeTypeArgs("ref", "integer", using="nullif(ref, '')::integer"))
    snapshot("change-type-shadow-using", plan)


def test_rename_column_syncs_both_names_and_moves_the_unique_constraint(snapshot):
    plan = plan_rename_column(RenameColumnFacts(PG18, ACCOUNTS, CODE_DETAILS),
                              RenameColumnArgs("code", "account_code"))
    snapshot("rename-column", plan)


def test_drop_column_without_dependents_is_one_irreversible_catalog_only_step(snapshot):
    details = ColumnDetails(column=ACCOUNT_REF, attnum=3, type_oid=TEXT, typmod=-1)
    plan = plan_drop_column(DropColumnFacts(PG18, ACCOUNTS, details),
                            DropColumnArgs("ref", confirm=True))
    snapshot("drop-column", plan)


def test_drop_column_used_by_a_view_adds_cascade_and_lists_what_goes_with_it(snapshot):
    details = ColumnDetails(
        column=ACCOUNT_REF, attnum=3, type_oid=TEXT, typmod=-1,
        dependents=(*REF_DETAILS.dependents, Dependent("view", "view public.account_refs", "n")),
        indexes=(REF_IDX,))
    plan = plan_drop_column(DropColumnFacts(PG18, ACCOUNTS, details),
                            DropColumnArgs("ref", confirm=True))
    snapshot("drop-column-cascade", plan)


# invoices (id bigserial PRIMARY KEY, account_id integer NOT NULL REFERENCES accounts
#           ON DELETE CASCADE, with an index), referencing the key about to run out
INVOICE_ACCOUNT = ColumnFacts("account_id", "integer", not_null=True)
INVOICES = TableFacts(
    schema="billing", name="invoices", oid=16600,
    columns=(ColumnFacts("id", "bigint", not_null=True), INVOICE_ACCOUNT),
    primary_key=("id",), estimated_rows=50_000_000, size_bytes=8 * 1024**3,
    indexes=(index("invoices", "invoices_pkey", "id", primary=True),
             index("invoices", "invoices_account_idx", "account_id")),
)
INVOICES_FKEY = ReferencingKey(
    "invoices_account_id_fkey", "billing", "invoices", 16600, "account_id",
    "FOREIGN KEY (account_id) REFERENCES public.accounts(id) ON DELETE CASCADE", validated=True)
INVOICE_ACCOUNT_DETAILS = ColumnDetails(
    column=INVOICE_ACCOUNT, attnum=2, type_oid=INT4, typmod=-1,
    dependents=(Dependent("index", "index billing.invoices_account_idx", "a"),
                Dependent("foreign key", "constraint invoices_account_id_fkey on table "
                          "billing.invoices", "a")),
    indexes=(ColumnIndex("billing", "invoices_account_idx", INVOICES.indexes[1].definition,
                         valid=True),),
)
REFERENCED_ID = ColumnDetails(
    **{**ID_DETAILS.__dict__,
       "dependents": (*ID_DETAILS.dependents,
                      Dependent("referencing foreign key", "constraint invoices_account_id_fkey "
                                "on table billing.invoices", "n")),
       "referenced_by": (INVOICES_FKEY,)})
BIGINT = NewTypeFacts("bigint", INT8, -1, collatable=False, binary_coercible=False)


def test_change_type_of_a_referenced_key_is_refused_naming_every_referencing_column():
    with pytest.raises(CatalogError) as err:
        plan_change_type(ChangeTypeFacts(PG18, ACCOUNTS, REFERENCED_ID, BIGINT),
                         ChangeTypeArgs("id", "bigint"))
    assert ('referenced by 1 foreign key: "billing"."invoices"."account_id" '
            '("invoices_account_id_fkey")') in err.value.message
    assert "--with-references" in (err.value.hint or "")


def test_change_type_with_references_converts_the_key_and_referencing_column_in_one_cutover(
        snapshot):
    refs = (ReferencingColumn(INVOICES, INVOICE_ACCOUNT_DETAILS, (INVOICES_FKEY,)),)
    plan = plan_change_type(ChangeTypeFacts(PG18, ACCOUNTS, REFERENCED_ID, BIGINT, refs),
                            ChangeTypeArgs("id", "bigint", with_references=True))
    snapshot("change-type-with-references", plan)
    cutover = next(s for s in plan.steps if s.id == "cutover")
    assert cutover.tables == ('"public"."accounts"', '"billing"."invoices"')
    assert [s.id for s in plan.steps if s.phase == "contract"] == [
        "cutover", "validate-fk-1", "drop-old-column", "ref1-drop-old-column"]


def test_with_references_is_recorded_only_when_given_so_earlier_jobs_are_still_found():
    assert recorded_args(ChangeTypeArgs("id", "bigint")) == {
        "column": "id", "type_sql": "bigint", "using": None}
    assert recorded_args(ChangeTypeArgs("id", "bigint", with_references=True))[
        "with_references"] is True
