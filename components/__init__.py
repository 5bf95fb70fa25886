"""One thin entry point per pipeline stage: ``python -m components.<stage> --help``.

Each component reads its params.yaml section(s), takes paths from argv, calls the semires library,
writes its declared outputs atomically and logs a nested MLflow run (see :mod:`components._stage`).
DVC (dvc.yaml), Airflow (dags/) and Kubeflow (infra/kfp) all run these same commands.
"""
