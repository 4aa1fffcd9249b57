from distillrec import artifacts
from distillrec.stages import Stage, content_key


def finished_stage(directory, key, payload="x"):
    stage = Stage("s", directory, key)
    assert stage.start() is False
    artifacts.write_json(directory / "metrics.json", {"payload": payload})
    artifacts.write_manifest(directory, kind="test")
    stage.finish()
    return stage


def test_content_key_depends_on_every_input():
    assert content_key({"a": 1}, "x") == content_key({"a": 1}, "x")
    assert content_key({"a": 1}, "x") != content_key({"a": 2}, "x")
    assert content_key({"a": 1, "b": 2}) == content_key({"b": 2, "a": 1})


def test_a_finished_stage_is_done_for_the_same_key_only(tmp_path):
    stage = finished_stage(tmp_path / "s", "k1")
    assert stage.is_done()
    assert not Stage("s", tmp_path / "s", "k2").is_done()


def test_changed_inputs_start_clean(tmp_path):
    finished_stage(tmp_path / "s", "k1")
    stage = Stage("s", tmp_path / "s", "k2")
    assert stage.start() is False
    assert not (tmp_path / "s" / "metrics.json").exists()


def test_an_interrupted_stage_resumes_with_its_files(tmp_path):
    stage = Stage("s", tmp_path / "s", "k1")
    stage.start()
    (tmp_path / "s" / "checkpoint").write_text("epoch 3")
    again = Stage("s", tmp_path / "s", "k1")
    assert not again.is_done() and again.start() is True
    assert (tmp_path / "s" / "checkpoint").read_text() == "epoch 3"


def test_damaged_output_is_not_trusted(tmp_path):
    stage = finished_stage(tmp_path / "s", "k1")
    (tmp_path / "s" / "metrics.json").write_text('{"payload": "tampered"}')
    assert not stage.is_done()
