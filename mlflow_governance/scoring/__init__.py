"""Scoring a governed model, one definition for every caller: the decision (`decision`: P(DELAYED)
and the threshold), what a validation or monitor reads as scoring inputs (`inputs`: the data and
the registered version with its recorded reference), and the explanation of a score
(`explanations`: SHAP contributions and the smallest change that flips a prediction).

Owns: turning a registered version and rows into predictions, and their explanations. It sits
below the sidecar, validation and evidence, which all score with it (explanations live here,
not in evidence, because the sidecar serves them). May import: the core, safe, airline,
training (the data helpers) and monitoring (its reference); nothing above.
"""
