"""Checkpoints mapped rather than copied: the tensors equal safetensors' own reading, large ones are
the file's pages (one mapping each, gone with the tensor), writes never reach the file, and the
loader hands the modules those very tensors."""
import gc
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from ttsopt.engine import checkpoint, sources


def _mappings(path) -> int:
    return open("/proc/self/maps").read().count(str(path))


@pytest.fixture()
def mixed(tmp_path):
    state = {"big": torch.randn(1024, 300), "bf16": torch.randn(600, 1024).bfloat16(), "half": torch.randn(9).half(),
             "ids": torch.arange(10), "flags": torch.tensor([True, False]), "scalar": torch.tensor(3.0),
             "empty": torch.zeros(0, 4), "int8": torch.randint(-5, 5, (3 << 20,), dtype=torch.int8),
             "u16": torch.arange(6).to(torch.uint16), "u64": torch.arange(6).to(torch.uint64),
             "f8": torch.randn(8).to(torch.float8_e4m3fn), "complex": torch.randn(3, dtype=torch.complex64),
             "big_u16": torch.arange(1 << 20).to(torch.uint16), "big_f8": torch.randn(3 << 19).to(torch.float8_e5m2)}
    path = tmp_path / "mixed.safetensors"
    save_file(state, str(path))
    return path, state


def test_every_tensor_reads_as_safetensors_reads_it(mixed):
    path, state = mixed
    mine, theirs = checkpoint.read(path), load_file(str(path))
    assert mine.keys() == theirs.keys() == state.keys()
    for name, tensor in mine.items():
        assert tensor.dtype == theirs[name].dtype and tensor.shape == theirs[name].shape, name
        assert torch.equal(tensor.view(-1).view(torch.uint8), theirs[name].view(-1).view(torch.uint8)), name


def test_large_tensors_are_mappings_of_the_file_each_gone_with_its_tensor_and_none_holds_a_file_open(mixed):
    path, _ = mixed
    open_files = len(os.listdir("/proc/self/fd"))
    state = checkpoint.read(path)  # big, bf16, int8, big_u16 and big_f8 (1.2 to 3 MB) pass MAPPED_MIN_BYTES
    assert _mappings(path) == 5 and len(os.listdir("/proc/self/fd")) == open_files
    del state["big"]
    gc.collect()
    assert _mappings(path) == 4
    del state
    gc.collect()
    assert _mappings(path) == 0


def test_writes_to_a_mapped_tensor_stay_in_the_process(mixed):
    path, state = mixed
    before = path.read_bytes()
    checkpoint.read(path)["big"].add_(1.0)
    assert path.read_bytes() == before and torch.equal(load_file(str(path))["big"], state["big"])


def test_a_truncated_file_fails_in_safetensors_own_check_before_anything_is_mapped(mixed, tmp_path):
    path, _ = mixed
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(Exception, match="(?i)incomplete|truncat|invalid"):
        checkpoint.read(cut)
    assert _mappings(cut) == 0


def test_the_loader_gives_modules_the_read_tensors_not_copies(tiny_dir, monkeypatch):
    read = {}
    real = sources._read_state

    def recording(path):
        read[path.name] = real(path)
        return read[path.name]
    monkeypatch.setattr(sources, "_read_state", recording)
    model = sources.load(f"local:{tiny_dir}", device="cpu")
    t3_state = read[sources.LAYOUTS["original"].t3]
    for name, param in model.tts.t3.named_parameters():
        assert param.data_ptr() == t3_state[name].data_ptr(), name


def test_a_float16_checkpoint_loads_into_the_float32_model(tiny_dir, tmp_path):
    half = shutil.copytree(tiny_dir, tmp_path / "half")
    name = sources.LAYOUTS["original"].t3
    state = load_file(str(half / name))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, str(half / name))
    model = sources.load(f"local:{half}", device="cpu")
    assert {p.dtype for p in model.tts.t3.parameters()} == {torch.float32}
    assert torch.equal(model.tts.t3.speech_head.weight, state["speech_head.weight"].half().float())


def test_saving_another_model_over_a_loaded_ones_folder_leaves_the_loaded_one_as_it_was(tmp_path, tiny_dir,
                                                                                         monkeypatch):
    monkeypatch.setattr(checkpoint, "MAPPED_MIN_BYTES", 0)  # the tiny model's tensors all mapped
    folder = shutil.copytree(tiny_dir, tmp_path / "weights")
    loaded = sources.load(f"local:{folder}", device="cpu")
    before = {k: v.clone() for k, v in loaded.tts.t3.state_dict().items()}
    other = sources.load("tiny", device="cpu", seed=7)
    # safetensors writes a new file in the old one's place; were it written over, the loaded model's
    # pages would now read seed 7's weights
    sources.save_local(other, folder)
    assert all(torch.equal(v, before[k]) for k, v in loaded.tts.t3.state_dict().items())
    again = sources.load(f"local:{folder}", device="cpu")
    assert torch.equal(again.tts.t3.speech_head.weight, other.tts.t3.speech_head.weight)
    assert not torch.equal(again.tts.t3.speech_head.weight, before["speech_head.weight"])


@pytest.fixture()
def pickled(tmp_path):
    big = torch.randn(1024, 300)
    state = {"big": big, "tied": big, "rows": big[100:400], "transposed": torch.randn(600, 700).t(),
             "bf16": torch.randn(600, 1024).bfloat16(), "half": torch.randn(9).half(), "ids": torch.arange(10),
             "flags": torch.tensor([True, False]), "scalar": torch.tensor(3.0), "empty": torch.zeros(0, 4),
             "int8": torch.randint(-5, 5, (3 << 20,), dtype=torch.int8)}
    path = tmp_path / "mixed.pt"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("min_bytes", [None, 0])  # the default, and every storage mapped (the empty one too)
def test_every_tensor_of_a_torch_pickle_reads_as_torch_load_reads_it(pickled, min_bytes):
    path, _ = pickled
    mine, theirs = checkpoint.read_pickle(path, min_bytes), torch.load(path, weights_only=True)
    assert mine.keys() == theirs.keys()
    for name, tensor in mine.items():
        assert (tensor.dtype, tensor.shape, tensor.stride(), tensor.storage_offset()) == \
            (theirs[name].dtype, theirs[name].shape, theirs[name].stride(), theirs[name].storage_offset()), name
        assert torch.equal(tensor, theirs[name]), name


def test_a_torch_pickles_large_storages_are_mapped_once_each_and_shared_as_saved(pickled):
    path, _ = pickled
    state = checkpoint.read_pickle(path)  # big (with tied and rows on its storage), transposed, bf16, int8
    assert _mappings(path) == 4
    assert state["tied"].data_ptr() == state["big"].data_ptr()
    assert state["rows"].untyped_storage().data_ptr() == state["big"].untyped_storage().data_ptr()
    state["rows"][0, 0] = 7.0
    assert state["big"][100, 0] == 7.0  # one storage, as torch.load gives it
    del state["transposed"]
    gc.collect()
    assert _mappings(path) == 3
    del state
    gc.collect()
    assert _mappings(path) == 0


def test_a_truncated_torch_pickle_fails_with_the_loaders_error(pickled, tmp_path):
    path, _ = pickled
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:-5000])
    with pytest.raises(sources.SourceError, match="cannot read .*cut.pt"):
        sources._read_state(cut)
    assert _mappings(cut) == 0
