"""Weights from folders and from a stand-in Hub: pinned loads equal local ones, every failure is named and fast."""

import argparse
import json
import shutil
import socket
import time
from pathlib import Path

import pytest
import torch
from hub_server import StandInHub
from huggingface_hub import constants, metadata_load
from PIL import Image

from unet import hub, publish
from unet.catalog import load_catalog
from unet.hub import WeightsError, load_model
from unet.model import UNet

REPO = "user/tiny"
IMAGE = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
EVAL = {
    "dataset": "composite-test",
    "images": "data/composites/test/images",
    "num_images": 500,
    "threshold": 0.5,
    "class_names": ["background", "foreground"],
    "iou": {"per_class": {"background": 0.98, "foreground": 0.91}, "mean": 0.945},
    "dice": {"per_class": {"background": 0.99, "foreground": 0.95}, "mean": 0.97},
    "headline": {"iou": 0.91, "dice": 0.95},
    "weights": "checkpoints",
    "date": "2026-11-25",
}


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test online, even where the environment sets HF_HUB_OFFLINE (read by huggingface_hub at import)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def outputs(model: UNet) -> torch.Tensor:
    with torch.no_grad():
        return model(IMAGE)


def save_checkpoint(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = UNet(base_width=4, depth=2)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode really differs from train mode
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real tiny checkpoints (main, dev), a folder with only a config and one with only a pickle."""
    root = tmp_path_factory.mktemp("checkpoints")
    folders = {"main": save_checkpoint(root / "main", seed=0), "dev": save_checkpoint(root / "dev", seed=1)}
    folders["config-only"] = root / "config-only"
    folders["config-only"].mkdir()
    shutil.copy(folders["main"] / "config.json", folders["config-only"])
    folders["pickled"] = root / "pickled"
    shutil.copytree(folders["config-only"], folders["pickled"])
    torch.save(UNet(base_width=4, depth=2).state_dict(), folders["pickled"] / "pytorch_model.bin")
    folders["broken"] = root / "broken"
    shutil.copytree(folders["main"], folders["broken"])
    weights = folders["broken"] / "model.safetensors"
    weights.write_bytes(b"\xff" * 8 + weights.read_bytes()[8:])  # the header length becomes absurd
    return folders


@pytest.fixture
def stand_in(tmp_path: Path, checkpoints: dict[str, Path]) -> StandInHub:
    """A fresh stand-in Hub per test (a daemon thread left retrying by a test talks to a closed port after it)."""
    with StandInHub(tmp_path / "hub") as server:
        server.add_commit(REPO, checkpoints["main"], tags=("v1",))
        server.add_commit(REPO, checkpoints["dev"], branch="dev")
        for name in ("config-only", "pickled", "broken"):
            server.add_commit(f"user/{name}", checkpoints[name])
        yield server


def sha(server: StandInHub, ref: str) -> str:
    return server.repos[REPO].refs[ref]


def load_from(server: StandInHub, tmp_path: Path, source: str, **kwargs) -> tuple[UNet, hub.WeightsInfo]:
    return load_model(source, endpoint=server.url, cache_dir=tmp_path / "cache", **kwargs)


def failure(load, *args, **kwargs) -> tuple[str, float]:
    """The WeightsError message of a load and the seconds it took to fail."""
    start = time.perf_counter()
    with pytest.raises(WeightsError) as caught:
        load(*args, **kwargs)
    return str(caught.value), time.perf_counter() - start


# ----------------------------------------------------------------------------------------------------------------
# Loading from the Hub


@pytest.mark.parametrize("pin", ["none", "branch", "tag", "sha", "revision-argument"])
def test_hub_load_equals_local_load_and_reports_the_commit(stand_in, tmp_path, checkpoints, pin):
    main_sha = sha(stand_in, "main")
    source, revision = {
        "none": (REPO, None),
        "branch": (f"{REPO}@main", None),
        "tag": (f"{REPO}@v1", None),
        "sha": (f"{REPO}@{main_sha}", None),
        "revision-argument": (REPO, main_sha),
    }[pin]
    model, info = load_from(stand_in, tmp_path, source, revision=revision)
    local, local_info = load_model(checkpoints["main"])
    assert not model.training
    assert torch.equal(outputs(model), outputs(local))
    assert (info.repo_id, info.commit, local_info.commit) == (REPO, main_sha, None)
    assert info.folder == tmp_path / "cache" / "models--user--tiny" / "snapshots" / main_sha
    assert info.card == (checkpoints["main"] / "README.md").read_text()
    assert main_sha in info.describe()


def test_a_branch_loads_its_own_commit(stand_in, tmp_path, checkpoints):
    model, info = load_from(stand_in, tmp_path, f"{REPO}@dev")
    assert info.commit == sha(stand_in, "dev") != sha(stand_in, "main")
    assert torch.equal(outputs(model), outputs(load_model(checkpoints["dev"])[0]))
    assert not torch.equal(outputs(model), outputs(load_model(checkpoints["main"])[0]))


def test_a_cached_commit_sha_loads_without_the_network(stand_in, tmp_path):
    pinned = f"{REPO}@{sha(stand_in, 'main')}"
    load_from(stand_in, tmp_path, pinned)
    stand_in.requests.clear()
    assert load_from(stand_in, tmp_path, pinned)[1].commit == sha(stand_in, "main")
    assert stand_in.requests == []


# ----------------------------------------------------------------------------------------------------------------
# Hub failures: each names its cause, within seconds


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        ("nobody/nothing", "repository nobody/nothing not found"),
        (f"{REPO}@no-such-branch", "revision 'no-such-branch' not found in user/tiny"),
        ("user/config-only", "has no model.safetensors (it holds: config.json)"),
    ],
)
def test_not_found_names_what_is_missing(stand_in, tmp_path, source, cause):
    message, seconds = failure(load_from, stand_in, tmp_path, source)
    assert cause in message
    assert seconds < 3


def test_server_error_fails_at_once(stand_in, tmp_path):
    stand_in.server_error = True
    message, seconds = failure(load_from, stand_in, tmp_path, REPO)
    assert "HTTP 500 (a server error)" in message
    assert seconds < 3  # the client alone would retry for ~23 s


def test_server_error_with_a_warm_cache_loads_the_cached_copy(stand_in, tmp_path, checkpoints):
    load_from(stand_in, tmp_path, REPO)
    stand_in.server_error = True
    model, info = load_from(stand_in, tmp_path, REPO)
    assert info.commit == sha(stand_in, "main")
    assert torch.equal(outputs(model), outputs(load_model(checkpoints["main"])[0]))


def test_refused_connection_fails_at_once(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    message, seconds = failure(load_model, REPO, endpoint=f"http://127.0.0.1:{port}", cache_dir=tmp_path)
    assert "could not connect to" in message and "Connection refused" in message
    assert seconds < 3


def test_truncated_download_gives_up_when_nothing_new_arrives(stand_in, tmp_path, checkpoints):
    stand_in.truncate = {"model.safetensors"}
    message, seconds = failure(load_from, stand_in, tmp_path, REPO, timeout_s=1.0)
    assert "broke off before the end of the file (truncated) and brought nothing new for 1 s" in message
    size = (checkpoints["main"] / "model.safetensors").stat().st_size
    assert f"received {size // 2} bytes, expected {size}" in message  # the server sends half the file
    assert "--hub-timeout" in message and "UNET_HUB_TIMEOUT" in message  # what can be done about it
    assert 1.0 <= seconds < 4


def test_a_slow_but_steady_download_is_not_cut_off(stand_in, tmp_path):
    torch.manual_seed(0)
    larger = UNet(base_width=8)  # 2 MB of weights: pieces of 250 kB, each a sign of progress to the client
    larger.save_pretrained(tmp_path / "larger")
    stand_in.add_commit("user/larger", tmp_path / "larger")
    stand_in.slow, stand_in.slow_pieces, stand_in.slow_interval_s = {"model.safetensors"}, 8, 0.3
    started = time.perf_counter()
    model, _ = load_from(stand_in, tmp_path, "user/larger", timeout_s=1.0)
    assert time.perf_counter() - started > 2.0  # longer than the timeout in all, never silent as long
    assert torch.equal(outputs(model), outputs(larger.eval()))


def test_a_stalled_download_fails_after_the_timeout_of_silence(stand_in, tmp_path):
    stand_in.stall = {"model.safetensors"}
    message, seconds = failure(load_from, stand_in, tmp_path, REPO, timeout_s=1.0)
    assert "the download stalled: nothing new arrived for 1 s" in message
    assert 1.0 <= seconds < 4


def test_the_timeout_comes_from_the_flag_else_the_environment(monkeypatch):
    monkeypatch.delenv(hub.TIMEOUT_ENV, raising=False)
    parser = argparse.ArgumentParser()
    hub.add_timeout_argument(parser)
    assert parser.parse_args([]).hub_timeout == hub.DEFAULT_TIMEOUT_S
    assert parser.parse_args(["--hub-timeout", "2.5"]).hub_timeout == 2.5
    monkeypatch.setenv(hub.TIMEOUT_ENV, "30")
    parser = argparse.ArgumentParser()
    hub.add_timeout_argument(parser)
    assert parser.parse_args([]).hub_timeout == 30.0
    with pytest.raises(SystemExit):
        parser.parse_args(["--hub-timeout", "0"])


def test_corrupted_download_is_caught_and_dropped_from_the_cache(stand_in, tmp_path, checkpoints):
    stand_in.corrupt = {"model.safetensors"}
    message, _ = failure(load_from, stand_in, tmp_path, REPO)
    assert "the download of model.safetensors is corrupted" in message
    stand_in.corrupt = set()
    model, _ = load_from(stand_in, tmp_path, REPO)  # downloads again instead of trusting the damaged copy
    assert torch.equal(outputs(model), outputs(load_model(checkpoints["main"])[0]))


@pytest.mark.parametrize("where", ["hub", "folder"])
def test_corrupted_safetensors_file_is_refused(stand_in, tmp_path, checkpoints, where):
    source = "user/broken" if where == "hub" else str(checkpoints["broken"])
    message, _ = failure(load_from, stand_in, tmp_path, source)
    assert "model.safetensors is not a readable safetensors file" in message


def test_offline_with_an_empty_cache_fails_at_once_without_requests(stand_in, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message, seconds = failure(load_from, stand_in, tmp_path, REPO)
    assert "HF_HUB_OFFLINE is set and user/tiny@main is not in the local cache" in message
    assert seconds < 3
    assert stand_in.requests == []


def test_offline_with_a_warm_cache_loads_the_cached_commit(stand_in, tmp_path, checkpoints, monkeypatch):
    load_from(stand_in, tmp_path, REPO)
    stand_in.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, info = load_from(stand_in, tmp_path, REPO)
    assert info.commit == sha(stand_in, "main")
    assert torch.equal(outputs(model), outputs(load_model(checkpoints["main"])[0]))
    assert stand_in.requests == []


# ----------------------------------------------------------------------------------------------------------------
# Safetensors only, strict, and a config that fits


@pytest.mark.parametrize("where", ["hub", "folder"])
def test_pickle_only_weights_are_refused(stand_in, tmp_path, checkpoints, where):
    source = "user/pickled" if where == "hub" else str(checkpoints["pickled"])
    message, _ = failure(load_from, stand_in, tmp_path, source)
    assert "has no model.safetensors, only pickled weights (pytorch_model.bin)" in message
    assert "arbitrary code" in message and "save_pretrained" in message


def rewrite_config(tmp_path: Path, checkpoint: Path, **changes) -> Path:
    folder = tmp_path / "changed"
    shutil.copytree(checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


def test_weights_of_another_width_name_the_size_mismatches(tmp_path, checkpoints):
    message, _ = failure(load_model, rewrite_config(tmp_path, checkpoints["main"], base_width=8))
    assert "size mismatch (checkpoint vs model) [inc.0.weight (4, 3, 3, 3) vs (8, 3, 3, 3)" in message
    assert "missing keys" not in message and "unexpected keys" not in message


def test_weights_of_another_depth_name_the_missing_keys(tmp_path, checkpoints):
    message, _ = failure(load_model, rewrite_config(tmp_path, checkpoints["main"], depth=3))
    assert "missing keys [downs.2.1.0.weight" in message


@pytest.mark.parametrize(
    ("changes", "cause"),
    [
        ({"dropout": 0.1}, "has keys UNet does not take: dropout"),
        ({"upsampling": "nearest"}, "describes no valid UNet: upsampling must be 'bilinear' or 'transpose'"),
    ],
)
def test_incompatible_config_is_named(tmp_path, checkpoints, changes, cause):
    message, _ = failure(load_model, rewrite_config(tmp_path, checkpoints["main"], **changes))
    assert cause in message


def test_neither_folder_nor_repo_id(tmp_path):
    message, _ = failure(load_model, str(tmp_path / "missing" / "deeper"))
    assert "is neither an existing folder nor a Hub repo id" in message


# ----------------------------------------------------------------------------------------------------------------
# Choosing weights and falling back


def test_weights_come_from_the_flag_else_the_environment_else_the_bundled_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "BUNDLED_WEIGHTS", tmp_path)
    monkeypatch.delenv(hub.WEIGHTS_ENV, raising=False)
    assert hub.resolve_weights(None) == str(tmp_path)
    monkeypatch.setenv(hub.WEIGHTS_ENV, "env/weights@v2")
    assert hub.resolve_weights(None) == "env/weights@v2"
    assert hub.resolve_weights("flag/weights") == "flag/weights"
    parser = argparse.ArgumentParser()
    hub.add_weights_argument(parser)
    assert parser.parse_args(["--weights", "a/b@c"]).weights == "a/b@c"
    assert parser.parse_args([]).weights is None


def test_the_catalog_leaves_out_what_fails_and_says_so_without_server_addresses(
    stand_in, tmp_path, checkpoints, monkeypatch
):
    monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    served, warning = load_catalog(
        ["nobody/nothing", f"{REPO}@{sha(stand_in, 'main')}", str(tmp_path / "missing")], bundled=[checkpoints["dev"]]
    )
    assert [entry.name for entry in served] == ["dev", f"{REPO}@{sha(stand_in, 'main')}"]
    assert torch.allclose(outputs(served[1].predictor.model), outputs(load_model(checkpoints["main"])[0]), atol=1e-6)
    assert "repository nobody/nothing not found" in warning and "missing' is neither an existing folder" in warning
    assert stand_in.url not in warning and str(tmp_path) not in warning  # the log has them, the page does not
    with pytest.raises(WeightsError, match="repository nobody/nothing not found"):
        load_catalog(["nobody/nothing"], strict=True, bundled=[checkpoints["dev"]])


def test_the_catalog_names_each_model_once_and_never_by_its_path(tmp_path, checkpoints):
    copy = shutil.copytree(checkpoints["main"], tmp_path / "other" / "main")
    served, warning = load_catalog([str(checkpoints["main"]), str(copy)], bundled=[checkpoints["main"]])
    assert warning is None
    assert [entry.name for entry in served] == ["main", "other/main"]  # the bundled folder is not loaded twice


def test_a_failing_bundled_model_is_not_hidden(tmp_path, checkpoints):
    served, warning = load_catalog([str(checkpoints["main"])], bundled=[tmp_path])  # empty, as before training
    assert [entry.name for entry in served] == ["main"]
    assert "the folder has no config.json or model.safetensors" in warning
    message, _ = failure(load_catalog, bundled=[tmp_path])
    assert "no model could be loaded" in message


# ----------------------------------------------------------------------------------------------------------------
# Model card and push


@pytest.fixture
def trained_folder(tmp_path: Path, checkpoints: dict[str, Path]) -> Path:
    """A checkpoint folder as training and evaluation leave it, plus a pickle that must never be uploaded."""
    folder = tmp_path / "best"
    shutil.copytree(checkpoints["main"], folder)
    (folder / "training_args.json").write_text(json.dumps({"data": "data/composites", "lr": 0.003, "seed": 0}))
    (folder / "eval.json").write_text(json.dumps(EVAL))
    (folder / "val_scores.json").write_text(json.dumps({"epoch": 2, "headline": {"iou": 0.9, "dice": 0.95}}))
    (folder / "history.json").write_text(json.dumps([{"epoch": 1, "seconds": 60.0}, {"epoch": 2, "seconds": 90.5}]))
    Image.new("RGB", (4, 4)).save(folder / "curves.png")
    torch.save({"step": 1}, folder / "training_state.pt")
    return folder


def test_dry_run_push_writes_the_upload_and_a_card_with_the_evaluation(trained_folder, tmp_path):
    out = tmp_path / "upload"
    publish.main(["--repo-id", "me/unet-tiny", "--weights", str(trained_folder), "--dry-run", "--out", str(out)])
    files = {"README.md", "config.json", "model.safetensors", "training_args.json", "eval.json", "curves.png"}
    files |= {"val_scores.json", "history.json"}
    assert {path.name for path in out.iterdir()} == files
    assert (out / "model.safetensors").read_bytes() == (trained_folder / "model.safetensors").read_bytes()

    metadata = metadata_load(out / "README.md")
    assert metadata["pipeline_tag"] == "image-segmentation"
    assert (metadata["library_name"], metadata["license"]) == ("unet", "mit")
    assert metadata["datasets"] == ["composite-test", "composites"]
    assert "unet" in metadata["tags"]
    (entry,) = metadata["model-index"]
    (result,) = entry["results"]
    assert entry["name"] == "me/unet-tiny" and result["dataset"]["name"] == "composite-test"
    scores = {metric["type"]: metric["value"] for metric in result["metrics"]}
    assert scores == {
        "iou": 0.91,
        "dice": 0.95,
        "mean_iou": 0.945,
        "mean_dice": 0.97,
        "iou_background": 0.98,
        "dice_background": 0.99,
        "iou_foreground": 0.91,
        "dice_foreground": 0.95,
    }

    card = (out / "README.md").read_text()
    parameters = sum(parameter.numel() for parameter in UNet(base_width=4, depth=2).parameters())
    assert f"{parameters:,} parameters" in card
    assert "| lr | `0.003` |" in card  # from training_args.json
    assert "2 epochs took 2.5 minutes" in card and "epoch 2's, the best by validation IoU" in card
    assert "| foreground | 0.9100 | 0.9500 |" in card
    assert 'unet.load_model("me/unet-tiny@<commit sha>")' in card
    assert "![Training curves" in card


def test_eval_json_flag_overrides_the_folders_scores(trained_folder, tmp_path):
    better = {**EVAL, "headline": {"iou": 0.93, "dice": 0.96}}
    (tmp_path / "better.json").write_text(json.dumps(better))
    out = tmp_path / "upload"
    argv = ["--repo-id", "me/unet-tiny", "--weights", str(trained_folder), "--eval-json"]
    publish.main([*argv, str(tmp_path / "better.json"), "--dry-run", "--out", str(out)])
    assert json.loads((out / "eval.json").read_text()) == better
    (result,) = metadata_load(out / "README.md")["model-index"][0]["results"]
    assert {metric["type"]: metric["value"] for metric in result["metrics"]}["iou"] == 0.93


def test_card_without_evaluation_says_so_and_has_no_scores(checkpoints):
    card = publish.build_model_card(checkpoints["main"], None)
    assert "Not evaluated yet" in card and "model-index" not in card
    assert 'unet.load_model("USER/NAME@<commit sha>")' in card


def test_card_says_whether_the_scores_used_test_time_augmentation(checkpoints):
    plain = publish.build_model_card(checkpoints["main"], {**EVAL, "tta": "none"})
    flipped = publish.build_model_card(checkpoints["main"], {**EVAL, "tta": "flip"})
    turned = publish.build_model_card(checkpoints["main"], {**EVAL, "tta": "dihedral"})
    assert "without test-time augmentation" in plain and "--tta" not in plain
    assert "test-time augmentation `--tta flip`: average over the image's four mirror images" in flipped
    assert "`--tta dihedral`: average over the image's eight quarter turns and mirror images" in turned
    # An eval.json written before --tta recorded "flip": true or false.
    assert publish.build_model_card(checkpoints["main"], {**EVAL, "flip": True}) == flipped
    assert publish.build_model_card(checkpoints["main"], {**EVAL, "flip": False}) == plain


def test_card_says_whether_unsure_regions_were_dropped(checkpoints):
    kept = publish.build_model_card(checkpoints["main"], EVAL)  # written before the setting existed: none dropped
    dropped = publish.build_model_card(checkpoints["main"], {**EVAL, "min_confidence": 0.8})
    assert "every predicted region kept" in kept and "--min-confidence" not in kept
    assert "predicted regions of mean probability below 0.8 dropped (`--min-confidence 0.8`)" in dropped


def test_notes_flag_puts_the_markdown_in_the_card_before_the_training_section(trained_folder, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("## Training data\n\nClip art pasted on photographs.\n")
    out = tmp_path / "upload"
    argv = ["--repo-id", "me/unet-tiny", "--weights", str(trained_folder), "--notes", str(notes)]
    publish.main([*argv, "--dry-run", "--out", str(out)])
    card = (out / "README.md").read_text()
    assert card.index("## Intended use") < card.index("## Training data") < card.index("## Training\n")
    assert "Clip art pasted on photographs." in card


def test_the_bundled_checkpoint_loads_from_the_hub_as_from_its_folder(tmp_path):
    with StandInHub(tmp_path / "hub") as server:
        commit = server.add_commit("someone/unet-composites", hub.BUNDLED_WEIGHTS)
        model, info = load_from(server, tmp_path, f"someone/unet-composites@{commit}")
    local, _ = load_model(hub.BUNDLED_WEIGHTS)
    assert info.commit == commit
    assert info.card == (hub.BUNDLED_WEIGHTS / "README.md").read_text()
    assert torch.equal(outputs(model), outputs(local))
