"""MLflow helpers: flat params without secrets, nested runs, URIs."""

from __future__ import annotations

from semires.tracking import REDACTED, Tracker, TrackingConfig, flatten_params, is_secret_key, resolve_uri


def test_flatten_params_redacts_secrets_but_keeps_ordinary_keys():
    cfg = {"burn_in": {"lr": 0.001, "class_weights": [0.9, 1.1], "max_tokens": 20},
           "s3": {"aws_secret_access_key": "abc", "access_key_id": "AKIA", "token": "t0k",
                  "endpoint": "https://user:hunter2@minio:9000/bucket", "password": "pw"},
           "auth_header": "Bearer x"}
    flat = flatten_params(cfg)
    assert flat["burn_in.lr"] == 0.001 and flat["burn_in.class_weights"] == "[0.9, 1.1]"
    assert flat["burn_in.max_tokens"] == 20
    for k in ("s3.aws_secret_access_key", "s3.access_key_id", "s3.token", "s3.password", "auth_header"):
        assert flat[k] == REDACTED, k
    assert flat["s3.endpoint"] == f"https://user:{REDACTED}@minio:9000/bucket"
    assert "hunter2" not in str(flat) and "abc" not in str(flat)
    assert not is_secret_key("text_cache_size") and not is_secret_key("author")


def test_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert resolve_uri(TrackingConfig(), tmp_path) == ("http://mlflow:5000", None)
    assert resolve_uri(TrackingConfig(uri="sqlite:///x.db"), tmp_path)[0] == "sqlite:///x.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    uri, art = resolve_uri(TrackingConfig(), tmp_path / "run")
    assert uri == f"sqlite:///{(tmp_path / 'run' / 'mlflow.db').resolve()}"
    assert art.endswith("/run/mlartifacts")


def test_nested_run_under_pipeline_parent_and_disabled_tracker(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = TrackingConfig(uri=uri, experiment="exp")
    with Tracker(cfg, tmp_path).run("pipeline") as parent:
        pass
    monkeypatch.setenv("SEMIRES_PARENT_RUN_ID", parent.run_id)
    with Tracker(cfg, tmp_path).run("split", {"k": "v"}) as child:
        child.log_params({"split": {"seed": 0, "secret": "s"}})
        child.log_metrics({"prec@0.5": 50.0, "nan": float("nan")}, step=1)
        (tmp_path / "a.json").write_text("{}")
        child.log_artifact(tmp_path / "a.json")
    run = mlflow.MlflowClient(uri).get_run(child.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent.run_id and run.data.tags["k"] == "v"
    assert run.data.params == {"split.seed": "0", "split.secret": REDACTED}
    assert run.data.metrics == {"prec_at_0.5": 50.0}
    off = Tracker(TrackingConfig(enabled=False), tmp_path)
    with off.run("x") as t:
        t.log_metrics({"a": 1.0})
        assert t.run_id is None and t.log_model(None, ()) is None


def test_a_run_resumes_by_id_inside_a_callers_open_run(tmp_path, monkeypatch):
    # a resumed training stage inside a benchmark's parent run: MLflow needs nested=True there
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SEMIRES_PARENT_RUN_ID", raising=False)
    cfg = TrackingConfig(uri=f"sqlite:///{tmp_path / 'm.db'}", experiment="exp")
    with Tracker(cfg, tmp_path).run("stage") as first:
        first.log_metrics({"loss": 1.0}, step=0)
    with Tracker(cfg, tmp_path).run("bench"), Tracker(cfg, tmp_path).run("stage", run_id=first.run_id) as again:
        again.log_metrics({"loss": 0.5}, step=1)
    assert again.run_id == first.run_id
    hist = mlflow.MlflowClient(cfg.uri).get_metric_history(first.run_id, "loss")
    assert [m.value for m in hist] == [1.0, 0.5]
