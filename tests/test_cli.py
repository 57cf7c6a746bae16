import click
from click.testing import CliRunner

from vitaledge import __version__
from vitaledge.cli import main


def all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))


def test_version():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


def test_every_command_has_help():
    runner = CliRunner()
    cmds = list(all_commands(main))
    assert ("train", "beat") in cmds and ("data", "synth") in cmds and ("evaluate",) in cmds
    for path in cmds:
        r = runner.invoke(main, [*path, "--help"])
        assert r.exit_code == 0, (path, r.output)
        assert "Usage:" in r.output


def test_train_without_data_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(main, ["train", "beat", "--out", str(tmp_path / "r")])
    assert r.exit_code != 0 and "--records" in r.output
    r = CliRunner().invoke(main, ["train", "beat", "--records", str(tmp_path), "--balance",
                                  "hybrid:x", "--out", str(tmp_path / "r")])
    assert r.exit_code != 0 and "hybrid needs a positive count" in r.output
