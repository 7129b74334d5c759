"""Learning: what the stored vectors and labels teach.

- `evaluation`: stratified folds, classification reports.
- `linear_model`, `neighbours`, `predictors`: the candidate predictors and their graph.
- `probes.run_probe`: a linear probe per depth.
- `choosing`: the predictor for bootstrapping, chosen by cross-validation on the labels.
- `bootstrap`: predict labels, suggest what to label next, find suspect labels.
- `labels`: set, import, export and clear labels; `labelled_vectors` loads them with vectors.
- `selection`: coverage-weighted picks for `suggest`.
"""
