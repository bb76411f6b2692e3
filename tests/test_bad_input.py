"""Bad input ends in one clear line, a non-zero exit, and nothing written half-way."""
import numpy as np
import pytest
import soundfile as sf

from ttsopt import cli, variants
from ttsopt.core import params
from ttsopt.core.errors import UserError
from ttsopt.experiment import profiles
from ttsopt.variants.base import Variant


def synth(tmp_path, capsys, *args):
    out = tmp_path / "out.wav"
    source = [] if "--source" in args else ["--source", "tiny"]
    code = cli.main(["synth", *args, *source, "--tokens", "5", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    return code, (err[-1] if err else ""), out


def wav(path, sr=24_000, seconds=2.0, amplitude=0.3):
    t = np.arange(int(sr * seconds)) / sr
    sf.write(str(path), amplitude * np.sin(2 * np.pi * 220 * t), sr)
    return str(path)


@pytest.mark.parametrize("text, message", [
    ("", "text is empty"),
    ("   \t\n", "text is empty"),
    ("word " * 4000, "T3 reads at most 2048"),
    ("Hello 😀 world", "cannot read: '😀'"),
    ("Привет, мир", "cannot read"),
    ("你好世界", "cannot read"),
])
def test_bad_text(tmp_path, capsys, text, message):
    code, line, out = synth(tmp_path, capsys, text)
    assert code == 2 and message in line and line.startswith("ttsopt synth: error:")
    assert not out.exists()


def test_unknown_variant(tmp_path, capsys):
    code, line, out = synth(tmp_path, capsys, "Hello.", "--variant", "warp-drive")
    assert code == 2 and "unknown variant warp-drive" in line and not out.exists()


def test_incompatible_pair_names_both(monkeypatch):
    class A(Variant):
        name, conflicts = "a-variant", ("b-variant",)

    class B(Variant):
        name = "b-variant"

    monkeypatch.setattr(variants, "registry", lambda aliases=False: {"a-variant": A(), "b-variant": B()})
    with pytest.raises(UserError, match="variants b-variant and a-variant cannot be combined"):
        variants.parse("b-variant+a-variant")


@pytest.mark.parametrize("make, message", [
    (lambda p: str(p / "missing.wav"), "does not exist"),
    (lambda p: (p / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage") and str(p / "corrupt.wav"),
     "not readable audio"),
    (lambda p: wav(p / "silent.wav", amplitude=0.0), "is silent"),
    (lambda p: wav(p / "phone.wav", sr=8000), "8000 Hz"),
    (lambda p: wav(p / "blip.wav", seconds=0.2), "0.20 s long"),
])
def test_bad_reference_clip(tmp_path, capsys, make, message):
    code, line, out = synth(tmp_path, capsys, "Hello.", "--reference", make(tmp_path))
    assert code == 2 and message in line and not out.exists()


def test_reference_at_another_usual_rate_is_resampled(tmp_path, capsys):
    code, _, out = synth(tmp_path, capsys, "Hello.", "--reference", wav(tmp_path / "cd.wav", sr=44_100))
    assert code == 0 and sf.info(str(out)).samplerate == 24_000


def test_local_dir_with_truncated_file(tmp_path, capsys, tiny_dir):
    broken = tmp_path / "weights"
    broken.mkdir()
    for f in tiny_dir.iterdir():
        data = f.read_bytes()
        (broken / f.name).write_bytes(data[: len(data) // 2] if f.name == "t3_cfg.safetensors" else data)
    code, line, out = synth(tmp_path, capsys, "Hello.", "--source", f"local:{broken}")
    assert code == 2 and "t3_cfg.safetensors" in line and "truncated" in line and not out.exists()


def test_cuda_on_a_machine_without_one(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, line, out = synth(tmp_path, capsys, "Hello.", "--device", "cuda")
    assert code == 2 and "sees no CUDA device" in line and not out.exists()


def test_prompts_file_with_a_missing_column(tmp_path):
    bad = tmp_path / "prompts.csv"
    bad.write_text("id,text\nshort-01,Hello.\n")
    with pytest.raises(UserError, match="lacks column\\(s\\) category"):
        profiles.load_prompts(bad)


@pytest.mark.parametrize("out, message", [
    ("x.mp3", "--out must name a .wav file"),
    ("missing/x.wav", "does not exist"),
    ("folder.wav", "is a directory"),
])
def test_bad_output_path_is_refused_before_loading(tmp_path, capsys, out, message):
    (tmp_path / "folder.wav").mkdir()
    code = cli.main(["synth", "Hello.", "--source", "tiny", "--out", str(tmp_path / out)])
    assert code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.part"))


@pytest.mark.parametrize("args, message", [
    (["--tokens", "0"], "expected at least 1"),
    (["--tokens", "-5"], "expected at least 1"),
    (["--tokens", "1000000"], "expected at most 1000"),
    (["--source", "nosuch"], "unknown source 'nosuch'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_option_values_are_refused_by_the_parser(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as stop:
        cli.main(["synth", "Hello.", *args, "--out", str(tmp_path / "x.wav")])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_a_prompt_file_from_a_spreadsheet_is_read(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes("id,category,text\nmine,short,Hello.\n".encode("utf-8-sig"))
    assert profiles.load_prompts(bom)[0]["id"] == "mine"


@pytest.mark.parametrize("content, message", [
    (b"id,category,text\na,short,One.\na,short,Two.\n", "the id a more than once"),
    ("id,category,text\nx,short,Caf\xe9.\n".encode("cp1252"), "is not UTF-8"),
    (b"id,category,text\nq1,short,Hel\x00lo.\n", "NUL byte in q1"),
    ("id,category,text\nq1,short,Hello.\n".encode("utf-16"), "not UTF-8|NUL byte"),
    (b"id,category,text\n", "has no prompts"),
])
def test_a_bad_prompt_file_is_one_clear_error(tmp_path, content, message):
    bad = tmp_path / "prompts.csv"
    bad.write_bytes(content)
    with pytest.raises(UserError, match=message):
        profiles.load_prompts(bad)


def test_own_prompts_work_with_every_profile(tmp_path):
    mine = tmp_path / "mine.csv"
    mine.write_text("id,category,text\nq1,short,First one.\nq2,short,Second one.\nq3,long,A third.\nq4,x,Four.\n")
    for name, profile in profiles.PROFILES.items():
        chosen = profiles.prompts_for(profile, mine)
        assert chosen and {p["id"] for p in chosen} <= {"q1", "q2", "q3", "q4"}, name


def test_papermill_parameter_of_the_wrong_type(tmp_path):
    import papermill

    from ttsopt.experiment import suite

    out = tmp_path / "out.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(str(suite.NOTEBOOK), str(out), kernel_name=suite.KERNEL, progress_bar=False,
                                   parameters={"variant": 3, "out_dir": str(tmp_path / "store")})
    assert err.value.ename == "UserError"
    assert "parameter variant must be str, got 3 (int)" in err.value.evalue
    assert not (tmp_path / "store").exists()  # nothing written half-way


def test_the_parsers_token_cap_is_the_pipelines():
    from ttsopt.cli import options
    from ttsopt.engine.pipeline import Sampling

    assert Sampling().max_new_tokens == options.MAX_TOKENS


def _copy_weights(tiny_dir, target, change=None):
    target.mkdir()
    for f in tiny_dir.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    if change:
        change(target)
    return target


def _wrong_shape(folder):
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "t3_cfg.safetensors"))
    name = next(k for k, v in state.items() if v.ndim == 2)
    state[name] = state[name][:-1].contiguous()
    save_file(state, str(folder / "t3_cfg.safetensors"))


@pytest.mark.parametrize("change, file", [
    (lambda d: (d / "tokenizer.json").write_text("{not json"), "tokenizer.json"),
    (lambda d: (d / "ttsopt-arch.json").write_text("{not json"), "ttsopt-arch.json"),
    (lambda d: (d / "ttsopt-arch.json").write_text('{"arch": "huge"}'), "ttsopt-arch.json"),
    (lambda d: (d / "conds.pt").write_bytes(b"garbage, not a pickle"), "conds.pt"),
    (_wrong_shape, "t3_cfg.safetensors"),
])
def test_local_dir_with_a_corrupt_or_foreign_file_names_it(tmp_path, capsys, tiny_dir, change, file):
    broken = _copy_weights(tiny_dir, tmp_path / "weights", change)
    code, line, out = synth(tmp_path, capsys, "Hello.", "--source", f"local:{broken}")
    assert code == 2 and line.startswith("ttsopt synth: error: cannot use") and file in line, line
    assert "weights_only" not in line and not out.exists()


def test_a_weights_folder_without_a_voice_asks_for_a_reference_clip(tmp_path, capsys, tiny_dir):
    voiceless = _copy_weights(tiny_dir, tmp_path / "weights", lambda d: (d / "conds.pt").unlink())
    code, line, out = synth(tmp_path, capsys, "Hello.", "--source", f"local:{voiceless}")
    assert code == 2 and "no built-in voice" in line and "--reference" in line and not out.exists()


def test_accented_names_are_read_by_the_generated_tokenizer(tmp_path, capsys):
    code, line, out = synth(tmp_path, capsys, "From São Paulo to Zürich, Ångström’s café.")
    assert code == 0 and out.exists(), line


@pytest.mark.parametrize("value, expected", [(True, True), (False, False), ("false", False), ("True", True),
                                             ("0", False), ("yes", True)])
def test_boolean_notebook_parameters_read_the_strings_a_shell_gives(value, expected):
    assert params.check("profiling", value, params.flag) is expected


@pytest.mark.parametrize("name, value, rule, message", [
    ("profiling", "maybe", params.flag, "parameter profiling: expected true or false, got 'maybe'"),
    ("max_tokens", 0, params.tokens, "parameter max_tokens: expected at least 1, got 0"),
    ("max_tokens", 5000, params.tokens, "parameter max_tokens: expected at most 1000"),
    ("seed", True, params.count, "parameter seed: expected a whole number, got True"),
    ("seed", "one", params.count, "parameter seed: expected a whole number, got 'one'"),
    ("source", "nosuch", params.source, "parameter source: unknown source 'nosuch'"),
    ("device", "gpu", params.device, "parameter device: unknown device 'gpu'"),
])
def test_a_notebook_parameter_outside_its_rule_is_one_error_naming_it(name, value, rule, message):
    with pytest.raises(UserError) as err:
        params.check(name, value, rule)
    assert str(err.value).startswith(message), err.value


@pytest.mark.parametrize("field, value, message", [
    ("variant", "nosuch", "parameter variant: unknown variant nosuch"),
    ("profile", "huge", "parameter profile: unknown profile 'huge'"),
    ("source", "nosuch", "parameter source: unknown source"),
    ("dtype", "int3", "parameter dtype: unknown dtype 'int3'"),
    ("prompts_csv", "/nonexistent/prompts.csv", "parameter prompts_csv: prompts file /nonexistent/prompts.csv"),
])
def test_a_run_with_a_value_no_run_can_use_is_refused_before_anything_is_written(tmp_path, field, value, message):
    from ttsopt.experiment.runner import RunConfig

    with pytest.raises(UserError) as err:
        RunConfig(out_dir=str(tmp_path / "store"), **{field: value})
    assert str(err.value).startswith(message), err.value
    assert not (tmp_path / "store").exists()


def test_the_baseline_notebook_refuses_a_token_cap_out_of_range(tmp_path):
    import papermill

    from ttsopt.experiment import suite

    notebook = suite.NOTEBOOK.with_name("baseline.ipynb")
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), kernel_name=suite.KERNEL,
                                   progress_bar=False, parameters={"max_tokens": 0, "out_dir": str(tmp_path / "o")})
    assert err.value.ename == "UserError" and "parameter max_tokens: expected at least 1" in err.value.evalue
    assert not (tmp_path / "o").exists()


def test_synth_seed_does_not_change_the_random_weights():
    args = cli.build_parser().parse_args(["synth", "Hi.", "--out", "x.wav", "--seed", "7"])
    assert (args.seed, args.model_seed) == (7, 0)
