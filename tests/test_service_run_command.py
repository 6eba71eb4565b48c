"""`kinestream run` argument and configuration errors: one line naming the key, exit 2."""

import pytest

from kinestream.cli import main


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("KINESTREAM_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("flags", "key"),
    [
        (["--broker", "http://localhost:1883"], "mqtt.broker"),
        (["--metrics-port", "ninety"], "metrics.port"),
        (["--method", "magic"], "tracker.method"),
        (["--default-unit", "furlongs"], "tracker.default_unit"),
        (["--topic-prefix", "a/#"], "mqtt.topic_prefix"),
    ],
)
def test_invalid_flag_is_exit_2_with_one_line(flags, key, tmp_path, capsys):
    """A bad flag value stops `run` before anything starts: exit 2, one line naming the key."""
    code = main(["run", "--state-dir", str(tmp_path / "s"), *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert key in err
    assert not (tmp_path / "s").exists()


def test_invalid_environment_is_exit_2(monkeypatch, tmp_path, capsys):
    """A bad KINESTREAM_* variable is a configuration error too."""
    monkeypatch.setenv("KINESTREAM_STATE__CHECKPOINT_INTERVAL_S", "-1")
    code = main(["run", "--state-dir", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2
    assert "state.checkpoint_interval_s" in err


def test_missing_config_file_is_exit_2(tmp_path, capsys):
    """--config naming a file that does not exist: exit 2."""
    assert main(["run", "--config", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_metrics_port_in_use_is_one_line_exit_1(tmp_path, capsys):
    """A metrics port somebody else holds: exit 1 with one line saying what to change."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code = main(
            ["run", "--state-dir", str(tmp_path / "s"), "--metrics-port", str(port),
             "--broker", "mqtt://127.0.0.1:1"]
        )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in err


def test_unusable_state_dir_is_one_line_exit_1(tmp_path, capsys):
    """A state directory that cannot be created (a file is in the way): exit 1, one line."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["run", "--state-dir", str(blocker / "state")])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "state directory" in err
