import json

import pytest

from ttsopt.core import secrets
from ttsopt.measure import env

CANARY = "secret-canary"


@pytest.fixture
def no_hf_files(monkeypatch, tmp_path):
    """Point every HF token location at an empty directory."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("HF_TOKEN_PATH", raising=False)
    return tmp_path


def test_capture_names_the_environment():
    captured = env.capture(source="tiny")
    for key in (
        "date_utc", "python", "platform", "cpu_model", "cpu_units", "cpu_count", "torch", "cuda",
        "cuda_available", "gpu_name", "gpu_driver", "chatterbox_tts", "transformers",
        "numpy", "ttsopt", "git_commit", "git_dirty", "source",
    ):  # fmt: skip
        assert key in captured
    assert captured["source"] == "tiny"
    assert captured["numpy"]
    assert captured["date_utc"].endswith("+00:00")
    json.dumps(captured)  # stored as JSON as it is


@pytest.mark.parametrize("flags, units", [
    ({"avx2", "fma"}, "AVX2"),
    ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, "AVX512-BF16, AVX512-VNNI, AVX-512, AVX2"),
    ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, "AMX-BF16, AVX-512, AVX2"),
    (set(), None),
])
def test_cpu_units_tell_two_cpus_of_one_name_apart(flags, units):
    assert env.cpu_units(flags) == units


def test_capture_does_not_copy_the_environment(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", CANARY)
    monkeypatch.setenv("TTSOPT_TEST_PLAIN_VARIABLE", "plain-canary")
    text = json.dumps(env.capture())
    assert CANARY not in text
    assert "plain-canary" not in text


def test_secret_values_come_from_secret_named_variables(monkeypatch, no_hf_files):
    monkeypatch.setenv("HF_TOKEN", CANARY)
    monkeypatch.setenv("my_api_key", "key-canary")
    monkeypatch.setenv("DB_Password", "pw-canary")
    monkeypatch.setenv("TTSOPT_TEST_PLAIN_VARIABLE", "plain-value")
    monkeypatch.setenv("SHORT_TOKEN", "abc")
    found = secrets.secret_values()
    assert {CANARY, "key-canary", "pw-canary"} <= found
    assert "plain-value" not in found
    assert "abc" not in found


def test_flag_values_are_not_secrets(monkeypatch, no_hf_files):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("MAX_NEW_TOKENS", "1000")
    assert "false" not in secrets.secret_values()
    assert secrets.redact({"x": "false", "n": '{"max": 1000}'}) == {"x": "false", "n": '{"max": 1000}'}


def test_hf_token_files_are_secrets(monkeypatch, no_hf_files):
    (no_hf_files / ".cache" / "huggingface").mkdir(parents=True)
    (no_hf_files / ".cache" / "huggingface" / "token").write_text("hf_home_cache_token\n")
    (no_hf_files / "hf").mkdir()
    (no_hf_files / "hf" / "token").write_text("hf_home_token")
    (no_hf_files / "hf" / "stored_tokens").write_text("[work]\nhf_token = hf_stored_token\n")
    assert {"hf_home_cache_token", "hf_home_token", "hf_stored_token"} <= secrets.secret_values()


def test_redact_replaces_secrets_deeply(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", CANARY)
    assert secrets.redact({"x": "a secret-canary b"}) == {"x": "a [redacted] b"}
    nested = {"a": [1, {"b": ("x", CANARY)}], CANARY: 2.5, "n": None}
    redacted = secrets.redact(nested)
    assert CANARY not in repr(redacted)
    assert redacted["a"][1]["b"] == ("x", "[redacted]")
    assert redacted["n"] is None
    assert nested["a"][1]["b"][1] == CANARY  # the input is left alone


def test_redact_catches_json_escaped_secrets(monkeypatch):
    monkeypatch.setenv("SOME_PASSWORD", 'pa"ss\\word')
    evidence = json.dumps({"cmd": 'login pa"ss\\word'})
    assert "word" not in secrets.redact(evidence)


AVX512_BOX = {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"}


def test_an_avx2_cap_takes_the_wider_flags_away_and_says_so(monkeypatch):
    monkeypatch.setattr(env, "proc_flags", lambda: set(AVX512_BOX))
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert env.cpu_flags() == {"avx2", "fma"}
    assert env.cpu_units() == ("AVX2; capped: ATEN_CPU_CAPABILITY=avx2, not using AVX512-BF16, AVX512-VNNI, "
                               "AVX-512")
    assert env.capture()["isa_environment"] == {"ATEN_CPU_CAPABILITY": "avx2"}


@pytest.mark.parametrize("value", [None, "avx512", "AVX512"])
def test_no_cap_or_an_avx512_one_leaves_every_flag(monkeypatch, value):
    monkeypatch.setattr(env, "proc_flags", lambda: set(AVX512_BOX))
    if value is None:
        monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    else:
        monkeypatch.setenv("ATEN_CPU_CAPABILITY", value)
    assert env.cpu_flags() == AVX512_BOX
    assert env.cpu_units() == "AVX512-BF16, AVX512-VNNI, AVX-512, AVX2"
