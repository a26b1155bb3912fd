"""change-type, rename-column and drop-column plans: in place when the catalog allows it,
else a shadow column kept in step by a trigger, backfilled, and cut over in one short
transaction."""

from __future__ import annotations

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
)
from pgonline.catalog.facts import ColumnFacts, TableFacts
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
