"""Data for a sweep: a CSV read, or arrays taken, into numeric train/val/test arrays.

`load_csv` turns a CSV file (or a pandas DataFrame) into a `Dataset`: float32 feature matrices, one
label vector per split, the task ("binary", "multiclass" or "regression"),
and a plain-language record of every preprocessing step (the steps, in
order, are listed in `sweeps.data.loading`).

Every statistic (median, categories, mean, std) comes from the training
split only, so validation and test rows never leak into the preprocessing.
Column *types* (is this column numeric-looking text? dates? an id?) are
decided on the whole file: they describe the schema, not the values the
model learns.

Missing text values (empty or blank cells) are not a category of their own:
like categories first seen in val/test, they encode as all-zero indicators
(as "<infrequent>" in a column whose rare values were pooled:
`load_csv`'s max_categories and min_frequency).

`Dataset.from_arrays` builds a `Dataset` from the user's own numpy or JAX
arrays: a (rows, features) table or any (rows, *input_shape), such as
images (rows, height, width, channels) or sequences (rows, steps, features),
with the same shape and dtype checks; it splits off the validation rows
(stratified) when none are given, standardizes a regression target as
`load_csv` does and uses the features as given.

`Dataset.preprocessing_fit` is the fitted `Preprocessing`: it turns new rows
(a DataFrame) into features exactly as the training rows were
(`transform`), maps model outputs back to labels or target units
(`decode_labels`, `decode_target`), and saves as plain JSON (`to_json`,
`from_json`).

Modules, one idea each:
    reading        the file (separator, encoding) or DataFrame to a table;
                   duplicate names refused; target= and drop= checked
    columns        helpers on one column: missing cells, numeric text, ids
    dates          date-like text: its format, days, year, month, weekday
    target         the task and the labels' encoding
    splitting      train / val / test rows
    fitting        each column's kind, and its statistics fitted on train
    encoding       fitted columns applied to a table: raw features, report
    preprocessing  `Preprocessing`: transform new rows, JSON, decoding
    dataset        `Dataset`, `check_batch_size`
    checks         argument checks (shapes, fractions, seed) before any copy
    loading        `load_csv`: the steps in order
    messages       how values are written in notes and errors

Example:
    >>> import sweeps.data
    >>> data = sweeps.data.load_csv("data/telco_customer_churn.csv", target="Churn")
    >>> data.n_train, data.n_features, data.task, data.class_names
    (5634, 45, 'binary', ('No', 'Yes'))
"""

from sweeps.data.checks import TASKS
from sweeps.data.columns import ID_MIN_ROWS, NUMERIC_TEXT_SHARE
from sweeps.data.dataset import Dataset, check_batch_size
from sweeps.data.encoding import FittedColumn, TransformReport
from sweeps.data.loading import load_csv
from sweeps.data.preprocessing import Preprocessing
from sweeps.data.target import MAX_INFERRED_CLASSES

__all__ = [
    "ID_MIN_ROWS",
    "MAX_INFERRED_CLASSES",
    "NUMERIC_TEXT_SHARE",
    "TASKS",
    "Dataset",
    "FittedColumn",
    "Preprocessing",
    "TransformReport",
    "check_batch_size",
    "load_csv",
]
