"""Every use of a private Optuna or MLflow API, in one place.

The rest of the package calls only the functions here when it needs something the public
APIs do not offer. Each function names the versions it was checked against;
`tests/test_compat.py` fails when those internals change, so an upgrade shows at once
what to revisit.
"""

from __future__ import annotations

# --- Optuna (checked against optuna 5.x) -------------------------------------------------------

# --- MLflow (checked against mlflow 3.x) -------------------------------------------------------
