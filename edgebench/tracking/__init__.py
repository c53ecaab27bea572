"""Results in the places teams already look: experiment trackers (MLflow, extra ``mlflow``)."""
