"""Arrow schemas of the stage artifacts (docs/architecture.md §3). Every artifact carries `row_id`."""
from __future__ import annotations

import pyarrow as pa

TURN = pa.struct([("role", pa.string()), ("content", pa.string())])

# Ingest output: one normalised instruction row.
ROWS = pa.schema(
    [
        ("row_id", pa.string()),  # digest of the canonical content, see curate.ingest.normalize.row_id
        ("source", pa.string()),  # file the row came from (relative to the raw dir)
        ("position", pa.int64()),  # 0-based record index inside that file
        ("system", pa.string()),  # system prompt, "" when absent
        ("context", pa.list_(TURN)),  # earlier turns of a multi-turn row, [] for single turn
        ("instruction", pa.string()),  # last user turn
        ("input", pa.string()),  # Alpaca `input`, "" when absent
        ("response", pa.string()),  # last assistant turn: the scored and trained response
        ("skill", pa.string()),  # optional label carried through (demo pools); null otherwise
        ("truth", pa.string()),  # optional ground truth of the row's kind; read only by evaluation/bench
    ]
)

QUARANTINE = pa.schema(
    [
        ("source", pa.string()),
        ("position", pa.int64()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("row_id", pa.string()),  # null when the record could not be parsed into a row
        ("raw", pa.string()),  # the offending record, truncated, for the person reading the report
    ]
)

# Rows removed by deduplication: every removed row and why.
REMOVED = pa.schema(
    [
        ("row_id", pa.string()),
        ("source", pa.string()),
        ("position", pa.int64()),
        ("reason", pa.string()),  # exact | near | semantic
        ("duplicate_of", pa.string()),  # row_id of the kept row
        ("similarity", pa.float64()),
    ]
)

SCORES = pa.schema(
    [
        ("row_id", pa.string()),
        ("loss_cond", pa.float64()),
        ("loss_prior", pa.float64()),
        ("ifd", pa.float64()),
        ("n_response_tokens", pa.int64()),
        ("loss_swapped", pa.float64()),  # response loss under another row's prompt (NaN when not computed)
        ("scorer_digest", pa.string()),
    ]
)

SELECTION = pa.schema(
    [
        ("row_id", pa.string()),
        ("round", pa.int64()),
        ("rank", pa.int64()),  # 0 = first pick
        ("ifd", pa.float64()),
        ("diversity", pa.float64()),  # informativeness at pick time (S_DIV_t), null if unused
        ("score", pa.float64()),  # the value the strategy ranked by
        ("strategy", pa.string()),
        ("reason", pa.string()),
    ]
)


# The contract between rounds (select stage's `state.parquet`): every pool row in the round's order,
# read by the next round's select (ifd, margin, trained_round, order) and re-score (in_next_window).
STATE = pa.schema(
    [
        ("row_id", pa.string()),
        ("ifd", pa.float64()),  # the IFD the round ranked by (re-scored rows: the newest checkpoint's)
        ("margin", pa.float64()),  # mismatch margin, nats (NaN without contrast scores)
        ("eligible", pa.bool_()),
        ("ineligible_reason", pa.string()),  # null when eligible
        ("in_next_window", pa.bool_()),  # re-scored before the next round's select
        ("trained_round", pa.int64()),  # the first round that trained the row, null if none
    ]
)


def embedding_schema(dim: int) -> pa.Schema:
    return pa.schema([("row_id", pa.string()), ("embedding", pa.list_(pa.float32(), dim))])


def user_text(instruction: str, input_: str) -> str:
    """The user turn as the IterIT reference builds it: instruction, then `\\nInput: ` + input."""
    return f"{instruction}\nInput: {input_}" if input_ else instruction
