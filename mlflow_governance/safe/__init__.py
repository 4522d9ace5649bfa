"""What the standards ask of every file, URL, page and secret the package touches, one module each.

Owns: showing a URL without its secrets (`urls`), the rule and atomic writer of every output
file (`outputs`), third-party HTML reports made safe against script in their data (`html`), the
one model-loading policy (`model_files`: nothing that can run code is loaded), and database
passwords of the MLproject entry points kept out of MLflow's run parameters (`project_secrets`).
May import: the core (its settings and errors); nothing above.
"""
