"""Publishing to the Hub, tested offline against an in-process fake Hub.

huggingface_hub 2.x sends every request through one `httpx2.Client` made by a factory we can replace
(`set_client_factory`); `FakeHub` answers the routes `create_repo`, `create_commit`, `snapshot_download` and
`hf_hub_download` call and keeps the committed files in a dict, so a test can read back what a real upload would
have stored, download it again and load it.
"""

import base64
import hashlib
import json
import os
import runpy
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY_VIDEO, tiny_clip_config
from huggingface_hub import ModelCard, constants, snapshot_download
from huggingface_hub.utils import _http, set_client_factory
from safetensors.torch import load_file, save_file
from sklearn.metrics import mean_absolute_error, roc_auc_score
from transformers import AutoModelForVideoClassification, AutoVideoProcessor

from deepcoro_hf import cli
from deepcoro_hf.configuration_deepcoro import DeepCoroVideoConfig
from deepcoro_hf.evaluation import write_tables
from deepcoro_hf.hub import (
    EvaluationTablesError,
    ModelFolderError,
    push_to_hub,
    read_evaluation_tables,
    render_model_card,
)
from deepcoro_hf.modeling_deepcoro import DeepCoroClipModel, DeepCoroForSegmentClassification, DeepCoroVideoModel
from deepcoro_hf.video_processing_deepcoro import DeepCoroVideoProcessor
from deepcoro_hf.vocabulary import LABEL_COLUMNS, SEGMENT_BY_KEY, label_column

ENDPOINT = "https://hub.local"
TOKEN = "hf_test_token"
REPO = "me/deepcoro-tiny"
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------------------
# The fake Hub
# --------------------------------------------------------------------------------------------------------------
def _git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class FakeRepo:
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    sha: str = "0" * 40
    messages: list[str] = field(default_factory=list)


class FakeHub:
    """The Hub's HTTP API as huggingface_hub 2.4 calls it, in process. Repositories live in `repos`.

    Routes: POST /api/repos/create, POST /api/validate-yaml, POST /api/models/{repo}/preupload/{rev} (every file
    "regular", i.e. inline), POST /api/models/{repo}/commit/{rev} (NDJSON: header, then files in base64),
    GET /api/models/{repo}/revision/{rev}, GET /api/models/{repo}/tree/{rev}, HEAD and GET /{repo}/resolve/{rev}/{path}.
    Write routes need a bearer token. Anything else is a 404 (as is the user-agent probe /api/agent-harnesses).
    """

    def __init__(self):
        self.repos: dict[str, FakeRepo] = {}
        self.validated: list[str] = []
        self.calls: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        base = f"{request.url.scheme}://{request.url.host}"
        parts = path.strip("/").split("/")
        if path == "/api/repos/create" and request.method == "POST":
            return self._authorised(request) or self._create(json.loads(request.content), base)
        if path == "/api/validate-yaml" and request.method == "POST":
            return self._validate(json.loads(request.content)["content"])
        if len(parts) >= 6 and parts[:2] == ["api", "models"]:
            repo_id, route, revision = f"{parts[2]}/{parts[3]}", parts[4], parts[5]
            repo = self.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"repository {repo_id} not found")
            if route == "preupload" and request.method == "POST":
                files = json.loads(request.content)["files"]
                modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                return httpx2.Response(200, json={"files": modes})
            if route == "commit" and request.method == "POST":
                return self._authorised(request) or self._commit(repo_id, repo, request.content, base)
            if revision not in ("main", repo.sha):
                return self._error(404, "RevisionNotFound", f"revision {revision} not found")
            if route == "revision" and request.method == "GET":
                siblings = [{"rfilename": name} for name in sorted(repo.files)]
                return httpx2.Response(
                    200, json={"id": repo_id, "sha": repo.sha, "private": repo.private, "siblings": siblings}
                )
            if route == "tree" and request.method == "GET":
                listing = [
                    {"type": "file", "path": name, "size": len(content), "oid": _git_blob_sha(content)}
                    for name, content in sorted(repo.files.items())
                ]
                return httpx2.Response(200, json=listing)
        if len(parts) >= 5 and parts[2] == "resolve" and request.method in ("HEAD", "GET"):
            repo_id, revision, filename = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
            repo = self.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"repository {repo_id} not found")
            if revision not in ("main", repo.sha):
                return self._error(404, "RevisionNotFound", f"revision {revision} not found")
            if filename not in repo.files:
                return self._error(404, "EntryNotFound", f"{filename} not found in {repo_id}")
            content = repo.files[filename]
            headers = {
                "X-Repo-Commit": repo.sha,
                "ETag": f'"{_git_blob_sha(content)}"',
                "Content-Length": str(len(content)),
            }
            return httpx2.Response(200, headers=headers, content=content if request.method == "GET" else b"")
        return self._error(404, "NotFound", f"no route {request.method} {path}")

    @staticmethod
    def _error(status: int, code: str, message: str) -> httpx2.Response:
        return httpx2.Response(status, headers={"X-Error-Code": code}, json={"error": message})

    def _authorised(self, request: httpx2.Request) -> httpx2.Response | None:
        if not request.headers.get("authorization", "").startswith("Bearer hf_"):
            return self._error(401, "Unauthorized", "a write token is required")
        return None

    def _create(self, body: dict, base: str) -> httpx2.Response:
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        if repo_id in self.repos:
            return httpx2.Response(
                409, json={"error": "You already created this model repo", "url": f"{base}/{repo_id}"}
            )
        self.repos[repo_id] = FakeRepo(private=body.get("visibility") == "private")
        return httpx2.Response(200, json={"url": f"{base}/{repo_id}", "name": repo_id})

    def _validate(self, content: str) -> httpx2.Response:
        """What the Hub checks first: the README's front matter is a YAML mapping."""
        self.validated.append(content)
        try:
            metadata = yaml.safe_load(content.split("---\n")[1]) if content.startswith("---\n") else {}
        except yaml.YAMLError as err:
            return httpx2.Response(400, json={"errors": [{"message": f"invalid YAML: {err}"}], "warnings": []})
        if not isinstance(metadata, dict):
            return httpx2.Response(400, json={"errors": [{"message": "metadata must be a mapping"}], "warnings": []})
        return httpx2.Response(200, json={"errors": [], "warnings": []})

    def _commit(self, repo_id: str, repo: FakeRepo, body: bytes, base: str) -> httpx2.Response:
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "header":
                repo.messages.append(item["value"]["summary"])
            elif item["key"] == "file":
                assert item["value"]["encoding"] == "base64"
                repo.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] == "deletedFile":
                repo.files.pop(item["value"]["path"], None)
            else:
                return self._error(400, "BadRequest", f"unsupported commit operation {item['key']}")
        digest = hashlib.sha1(repo.sha.encode())
        for name, content in sorted(repo.files.items()):
            digest.update(name.encode() + _git_blob_sha(content).encode())
        repo.sha = digest.hexdigest()
        url = f"{base}/{repo_id}/commit/{repo.sha}"
        return httpx2.Response(200, json={"commitUrl": url, "commitOid": repo.sha, "pullRequestUrl": None})


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """Route huggingface_hub's HTTP client to a `FakeHub`, online, with a private download cache; restored after."""
    hub = FakeHub()
    previous = _http._GLOBAL_CLIENT_FACTORY  # no public getter; restored as it was
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub_cache"))
    set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub)))
    try:
        yield hub
    finally:
        set_client_factory(previous)


# --------------------------------------------------------------------------------------------------------------
# A tiny model folder and real evaluation tables
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny segment classifier saved with its video processor, a fixed study input and its logits."""
    torch.manual_seed(0)
    model = DeepCoroForSegmentClassification(tiny_clip_config()).eval()
    processor = DeepCoroVideoProcessor(num_frames=4, size={"height": 32, "width": 32}, max_videos=4)
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    videos = [np.random.default_rng(i).integers(0, 256, (6, 40, 48), dtype=np.uint8) for i in range(2)]
    inputs = processor(studies=[videos], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    return folder, model, processor, videos, logits


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """`write_tables` on random labels and predictions: the real CSV layout. Returns (folder, labels, predictions)."""
    rng = np.random.default_rng(0)
    n = 24
    ids = [f"study{i}" for i in range(n)]
    labels, predictions = {}, {}
    for column in LABEL_COLUMNS:
        if column.endswith("_stenosis"):
            labels[column] = rng.uniform(0, 100, n)
            predictions[column] = np.clip(labels[column] + rng.normal(0, 15, n), 0, 100)
        else:
            labels[column] = rng.integers(0, 2, n).astype(float)
            predictions[column] = 0.3 * labels[column] + rng.uniform(0, 0.7, n)
    labels["mace_composite"] = np.tile([0.0, 1.0], n // 2)
    predictions["mace_composite"] = rng.uniform(0, 1, n)
    labels, predictions = pd.DataFrame(labels, index=ids), pd.DataFrame(predictions, index=ids)
    patients = pd.Series([f"patient{i // 2}" for i in range(n)], index=ids)
    folder = tmp_path_factory.mktemp("evaluation")
    write_tables(labels, predictions, patients, folder, n_bootstrap=5)
    return folder, labels, predictions


def _csv_metrics(folder: Path) -> list[tuple[str, float]]:
    """(model-index metric type, value) of every AUROC / AUPRC / MAE / Pearson r row of the model-index tables."""
    types = {"auroc": "roc_auc", "auprc": "auprc", "mae": "mae", "pearson_r": "pearsonr"}
    frame = pd.concat([pd.read_csv(folder / "table_2_territories.csv"), pd.read_csv(folder / "study_level_tasks.csv")])
    frame = frame[frame["metric"].isin(list(types)) & frame["value"].notna()]
    return sorted((types[m], round(v, 4)) for m, v in zip(frame["metric"], frame["value"]))


# --------------------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------------------
def test_push_uploads_the_folder_and_a_card_that_round_trips(fake_hub, saved_model, evaluation, tmp_path):
    folder, model, processor, videos, logits = saved_model
    eval_dir, labels, predictions = evaluation
    commit = push_to_hub(
        folder, REPO, token=TOKEN, endpoint=ENDPOINT, private=True, eval_dir=eval_dir, license="cc-by-nc-4.0",
        base_model="me/deepcoro-clip-tiny", datasets=["me/phantoms"], eval_dataset_name="DeepCORO phantoms",
        training_data="Synthetic phantoms written by `deepcoro phantoms`.",
    )
    repo = fake_hub.repos[REPO]
    assert commit.oid == repo.sha and commit.commit_url == f"{ENDPOINT}/{REPO}/commit/{repo.sha}"
    assert repo.private and repo.messages == ["Upload DeepCoroForSegmentClassification with its model card"]

    # Every file of the folder, byte for byte, plus the card.
    on_disk = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert set(repo.files) == set(on_disk) | {"README.md"}
    assert all(repo.files[name] == content for name, content in on_disk.items())
    assert {"model.safetensors", "config.json", "video_preprocessor_config.json", "configuration_deepcoro.py",
            "modeling_deepcoro.py", "video_processing_deepcoro.py", "dicom.py", "vocabulary.py"} <= set(repo.files)
    assert json.loads(repo.files["config.json"])["auto_map"]["AutoModelForVideoClassification"] == (
        "modeling_deepcoro.DeepCoroForSegmentClassification"
    )

    # The card passed the Hub's YAML check and parses back with its metadata.
    readme = repo.files["README.md"].decode()
    assert fake_hub.validated == [readme]
    card = ModelCard(readme)
    assert card.data.license == "cc-by-nc-4.0" and card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "video-classification" and card.data.base_model == "me/deepcoro-clip-tiny"
    assert card.data.datasets == ["me/phantoms"]
    expected_tags = {
        "medical-imaging", "coronary-angiography", "video-classification", "dicom", "deepcoro", "custom_code"
    }
    assert expected_tags <= set(card.data.tags)
    # model-index: exactly the AUROC / AUPRC / MAE / r values of the evaluation CSVs ...
    results = card.data.eval_results
    assert sorted((r.metric_type, r.metric_value) for r in results) == _csv_metrics(eval_dir)
    assert {(r.dataset_type, r.dataset_name, r.dataset_split, r.task_type) for r in results} == {
        ("me/phantoms", "DeepCORO phantoms", "test", "video-classification")
    }
    # ... which are the metrics of the labels and predictions (scikit-learn on the pooled segment columns).
    by_name = {r.metric_name: r.metric_value for r in results}
    columns = [label_column(key, "stenosis_binary") for key in SEGMENT_BY_KEY]
    pooled_auroc = roc_auc_score(labels[columns].to_numpy().ravel(), predictions[columns].to_numpy().ravel())
    assert by_name["Stenosis >= 70% AUROC (Global micro-average)"] == pytest.approx(pooled_auroc, abs=5e-5)
    rca = [label_column(k, "stenosis") for k, s in SEGMENT_BY_KEY.items() if s.territory == "RCA"]
    rca_mae = mean_absolute_error(labels[rca].to_numpy().ravel(), predictions[rca].to_numpy().ravel())
    assert by_name["Stenosis (%) MAE (RCA micro-average)"] == pytest.approx(rca_mae, abs=5e-5)
    mace = roc_auc_score(labels["mace_composite"], predictions["mace_composite"])
    assert by_name["MACE (composite) AUROC"] == pytest.approx(mace, abs=5e-5)
    # The body's table shows the same value with its interval, and the card says what the model is not for.
    territories = pd.read_csv(eval_dir / "table_2_territories.csv")
    row = territories.set_index(["scope", "task", "metric"]).loc[("Global", "stenosis_binary", "auroc")]
    lines = readme.splitlines()
    block = next(i for i, line in enumerate(lines) if line.startswith("| Stenosis >= 70% | n (positive/total) |"))
    assert lines[block + 1].startswith(f"|  | AUROC | {row.value:.3f} ({row.ci_low:.3f}–{row.ci_high:.3f}) |")
    assert "not a medical device" in readme and "Synthetic phantoms written by" in readme
    assert "@misc{harrabi2026deepcoroclip" in readme

    # Download the repository again and load it: same outputs as the original model and processor.
    snapshot = Path(snapshot_download(REPO, endpoint=ENDPOINT, token=TOKEN, cache_dir=tmp_path / "download"))
    assert {p.name for p in snapshot.iterdir()} == set(repo.files)
    reloaded = AutoModelForVideoClassification.from_pretrained(snapshot, trust_remote_code=True).eval()
    reloaded_processor = AutoVideoProcessor.from_pretrained(snapshot, trust_remote_code=True)
    inputs = reloaded_processor(studies=[videos], return_tensors="pt")
    original = processor(studies=[videos], return_tensors="pt")
    assert torch.equal(inputs["pixel_values_videos"], original["pixel_values_videos"])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, logits, rtol=0, atol=1e-6)  # float noise only (~5e-8)


def test_downloaded_repository_runs_as_remote_code_offline(fake_hub, saved_model, tmp_path):
    """In a process that never imports deepcoro_hf, offline, the uploaded code files alone rebuild the model."""
    folder, _, processor, videos, logits = saved_model
    push_to_hub(folder, REPO, token=TOKEN, endpoint=ENDPOINT)
    snapshot = snapshot_download(REPO, endpoint=ENDPOINT, token=TOKEN, cache_dir=tmp_path / "download")
    inputs = processor(studies=[videos], return_tensors="pt")
    save_file({name: inputs[name] for name in ("pixel_values_videos", "video_mask")}, str(tmp_path / "in.safetensors"))
    script = textwrap.dedent(
        f"""
        import sys, torch
        from safetensors.torch import load_file, save_file
        from transformers import AutoModelForVideoClassification
        model = AutoModelForVideoClassification.from_pretrained({snapshot!r}, trust_remote_code=True).eval()
        assert "deepcoro_hf" not in sys.modules, "the package was imported"
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        with torch.no_grad():
            logits = model(**load_file({str(tmp_path / "in.safetensors")!r})).logits
        save_file({{"logits": logits}}, {str(tmp_path / "out.safetensors")!r})
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(load_file(str(tmp_path / "out.safetensors"))["logits"], logits, rtol=0, atol=1e-6)


def test_model_push_to_hub_then_the_card_and_later_pushes_keep_it(fake_hub, saved_model):
    """The transformers route: `model.push_to_hub` writes a generic card on a new repository; pushing ours replaces
    it, and later `push_to_hub` calls keep a card that is already there."""
    folder, model, processor, _, _ = saved_model
    card = render_model_card(model, repo_id=REPO, license="cc-by-nc-4.0")
    assert str(card) == str(render_model_card(folder, repo_id=REPO, license="cc-by-nc-4.0"))  # same card either way
    model.push_to_hub(REPO, token=TOKEN)
    processor.push_to_hub(REPO, token=TOKEN)
    assert "DeepCORO" not in fake_hub.repos[REPO].files["README.md"].decode()  # transformers' generic card
    card.push_to_hub(REPO, token=TOKEN)
    model.push_to_hub(REPO, token=TOKEN, commit_message="Retrained")
    files = fake_hub.repos[REPO].files
    assert fake_hub.repos[REPO].messages[-1] == "Retrained"
    assert {"model.safetensors", "config.json", "modeling_deepcoro.py", "video_preprocessor_config.json"} <= set(files)
    pushed = ModelCard(files["README.md"].decode())
    assert pushed.text == card.text and pushed.data.to_dict() == card.data.to_dict()


def test_cli_and_script_push_with_a_custom_license_and_pipeline(
    fake_hub, saved_model, evaluation, tmp_path, capsys, monkeypatch
):
    folder = tmp_path / "model"
    shutil.copytree(saved_model[0], folder)
    # What another module may add: a custom pipeline (registered in config.json) and a LoRA adapter sub-folder.
    (folder / "pipeline_deepcoro.py").write_text(
        '"""Stand-in pipeline module."""\nfrom .modeling_deepcoro import DeepCoroForSegmentClassification\n'
    )
    config = json.loads((folder / "config.json").read_text())
    config["custom_pipelines"] = {
        "coronary-study-assessment": {
            "impl": "pipeline_deepcoro.StudyPipeline", "pt": ["AutoModelForVideoClassification"]
        }
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "adapter").mkdir()
    (folder / "adapter" / "adapter_config.json").write_text("{}")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "scratch").write_text("never uploaded")

    argv = [
        "push", str(folder), "me/deepcoro-cli", "--endpoint", ENDPOINT, "--token", TOKEN,
        "--eval-dir", str(evaluation[0]), "--eval-dataset", "me/phantoms", "--tag", "phantom",
        "--license", "other", "--license-name", "deepcoro-research", "--license-link", "https://example.org/license",
    ]
    assert cli.main(argv) == 0
    repo = fake_hub.repos["me/deepcoro-cli"]
    assert capsys.readouterr().out.strip() == f"{ENDPOINT}/me/deepcoro-cli/commit/{repo.sha}"
    assert {"pipeline_deepcoro.py", "adapter/adapter_config.json"} <= set(repo.files)
    assert not any(name.startswith(".cache") for name in repo.files)
    card = ModelCard(repo.files["README.md"].decode())
    assert (card.data.license, card.data.license_name, card.data.license_link) == (
        "other", "deepcoro-research", "https://example.org/license"
    )
    assert "phantom" in card.data.tags and "`coronary-study-assessment`: `pipeline_deepcoro.StudyPipeline`" in card.text

    # The script is the same command; a bad folder is one error line and exit status 1, and nothing reaches the Hub.
    calls = len(fake_hub.calls)
    script = str(ROOT / "hub_scripts" / "push_to_hub.py")
    monkeypatch.setattr(sys, "argv", [script, str(tmp_path / "missing"), "me/x", "--endpoint", ENDPOINT])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(script, run_name="__main__")
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and str(tmp_path / "missing") in error and "does not exist" in error
    assert len(fake_hub.calls) == calls


def _break(folder: Path, how: str) -> str:
    """Damage a copy of a model folder; return the path the error must name."""
    if how == "missing folder":
        shutil.rmtree(folder)
        return str(folder)
    if how == "no config":
        (folder / "config.json").unlink()
        return str(folder)
    if how == "no weights":
        (folder / "model.safetensors").unlink()
        return str(folder)
    if how == "pickled weights":
        (folder / "pytorch_model.bin").write_bytes(b"\x80\x04")
        return str(folder / "pytorch_model.bin")
    if how == "no auto_map":
        config = json.loads((folder / "config.json").read_text())
        del config["auto_map"]
        (folder / "config.json").write_text(json.dumps(config))
        return str(folder / "config.json")
    if how == "missing code file":  # imported by configuration_deepcoro.py, not named by the auto_map
        (folder / "vocabulary.py").unlink()
        return str(folder / "vocabulary.py")
    if how == "not a deepcoro model":
        config = json.loads((folder / "config.json").read_text())
        config["model_type"] = "bert"
        (folder / "config.json").write_text(json.dumps(config))
        return str(folder / "config.json")
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "missing folder", "no config", "no weights", "pickled weights", "no auto_map", "missing code file",
        "not a deepcoro model",
    ],
)
def test_unpublishable_folders_are_refused_before_any_request(fake_hub, saved_model, tmp_path, how):
    folder = tmp_path / "model"
    shutil.copytree(saved_model[0], folder)
    path = _break(folder, how)
    with pytest.raises(ModelFolderError) as error:
        push_to_hub(folder, REPO, token=TOKEN, endpoint=ENDPOINT)
    assert isinstance(error.value, ValueError) and path in str(error.value)
    assert fake_hub.calls == []


def test_evaluation_folders_without_the_tables_are_refused(saved_model, evaluation, tmp_path):
    folder = saved_model[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "predictions.csv").write_text("study_id,x\n")
    with pytest.raises(EvaluationTablesError, match=str(empty)):
        render_model_card(folder, repo_id=REPO, eval_dir=empty, datasets=["me/phantoms"])
    other_layout = tmp_path / "other"
    other_layout.mkdir()
    (other_layout / "table_2_territories.csv").write_text("task,auroc\nstenosis_binary,0.9\n")
    with pytest.raises(EvaluationTablesError, match="table_2_territories.csv lacks the columns"):
        read_evaluation_tables(other_layout)
    with pytest.raises(ValueError, match="evaluation dataset"):
        render_model_card(folder, repo_id=REPO, eval_dir=evaluation[0])
    with pytest.raises(ValueError, match="license='other'"):
        render_model_card(folder, repo_id=REPO, license="mit", license_name="custom")
    with pytest.raises(ValueError, match="license_name must be an id"):
        render_model_card(folder, repo_id=REPO, license_name="My License")


def test_cards_of_the_clip_model_and_the_video_tower():
    clip = DeepCoroClipModel(tiny_clip_config())
    clip.config._name_or_path = "me/deepcoro-clip-base"  # as after from_pretrained("me/deepcoro-clip-base")
    card = render_model_card(clip, repo_id="me/deepcoro-clip-tiny")
    assert card.data.pipeline_tag == "feature-extraction" and "video-text" in card.data.tags
    assert card.data.base_model == "me/deepcoro-clip-base" and card.data.license == "other"
    assert "AutoModel.from_pretrained(\"me/deepcoro-clip-tiny\", trust_remote_code=True)" in card.text
    assert "get_text_features" in card.text and "No evaluation results were supplied" in card.text
    assert f"{sum(t.numel() for t in clip.state_dict().values()) / 1e3:.1f} k" in card.text

    tower = DeepCoroVideoModel(DeepCoroVideoConfig(**TINY_VIDEO))
    card = render_model_card(tower, repo_id="me/deepcoro-video-tiny")
    assert card.data.pipeline_tag == "feature-extraction" and card.data.base_model is None
    assert f"[1, {tower.config.num_tokens}, {tower.config.hidden_size}]" in card.text
    assert "logits" not in card.text
