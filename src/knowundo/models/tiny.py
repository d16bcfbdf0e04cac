"""The offline default model: a byte-level BPE tokenizer and a tiny Llama, both trained here from the bundled set.

LoRA on a randomly initialised model cannot fit the data (its loss stays near 6), so the tiny base is first
pretrained with all parameters on the general-knowledge set and the instance-free corpus: it learns the
language of the benchmark and the general facts, but no benchmark instance. Built on first use, cached under a
key of everything that shapes it, and rebuilt bit-identically from the seed.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

from knowundo.artifacts import hash_json, library_versions, write_json
from knowundo.config import TinyConfig, TrainConfig
from knowundo.data.format import pad_id_of
from knowundo.data.knowundo import bundled_world
from knowundo.data.system_prompts import SYSTEM_PROMPTS
from knowundo.models.batches import FeatureDataset, PadCollator
from knowundo.models.cache import cache_root
from knowundo.models.training import make_trainer, train, training_arguments
from knowundo.placement import describe

RECIPE_VERSION = 2  # bump when the tokenizer or pretraining recipe changes, so caches are rebuilt
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")


def tiny_key(cfg: TinyConfig) -> str:
    """Changes whenever the recipe, the shape or the pretraining text changes (so a stale cache is never used)."""
    text = [(item.get("system"), item["text"], item["labels"]) for item in _pretraining_texts(cfg)]
    return hash_json({"recipe": RECIPE_VERSION, "tiny": cfg.__dict__, "text": hash_json(text)})


def tiny_path(cfg: TinyConfig) -> Path:
    return cache_root() / f"tiny-{tiny_key(cfg)}"


def _pretraining_texts(cfg: TinyConfig) -> list[dict]:
    """The corpus, a seeded ``system_prompt_share`` of it under a system prompt (``system``) from our varied set,
    so that an instruction before a question is in-distribution."""
    world = bundled_world(cfg.corpus_seed)
    rng = random.Random(cfg.corpus_seed)
    return [
        {**item, "system": rng.choice(SYSTEM_PROMPTS)} if rng.random() < cfg.system_prompt_share else item
        for item in world["pretrain_corpus"] + world["general"]["train"] + world["general"]["heldout"]
    ]


def instances_in_corpus(cfg: TinyConfig, instances: set[str]) -> list[str]:
    """Benchmark instances (author or book names) that the pretraining corpus mentions: the tiny base must not
    know the data before fine-tuning, which the generator guarantees only for its own world's benchmark."""
    corpus = " ".join(item["text"] + " " + item["labels"] for item in bundled_world(cfg.corpus_seed)["pretrain_corpus"])
    return sorted(name for name in instances if name and name in corpus)


def train_tokenizer(cfg: TinyConfig):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [
        part for item in _pretraining_texts(cfg) for part in (item.get("system", ""), item["text"], item["labels"])
    ]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def tiny_model_config(cfg: TinyConfig, tokenizer):
    """The tiny Llama's configuration (what the preflight check reads without building anything)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def build_base_model(cfg: TinyConfig, tokenizer):
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(tiny_model_config(cfg, tokenizer))


def pretrain_features(tokenizer, cfg: TinyConfig) -> list[dict]:
    """Whole-sequence language modelling on ``[system \\n\\n] question \\n\\n answer </s>`` (the layout of
    the plain template)."""
    features = []
    for item in _pretraining_texts(cfg):
        system = f"{item['system']}\n\n" if item.get("system") else ""
        ids = tokenizer(system + item["text"] + "\n\n")["input_ids"]
        ids = (ids + tokenizer(item["labels"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])[
            : cfg.max_position_embeddings
        ]
        features.append({"input_ids": ids, "labels": list(ids)})
    return features


def build_tiny(cfg: TinyConfig, out_dir: Path, progress: bool = True) -> Path:
    """Train tokenizer and base from scratch into ``out_dir`` (written atomically as a whole directory)."""
    from transformers import set_seed

    set_seed(cfg.seed, deterministic=True)
    tokenizer = train_tokenizer(cfg)
    model = build_base_model(cfg, tokenizer)
    features = pretrain_features(tokenizer, cfg)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        pretraining = TrainConfig(
            epochs=cfg.pretrain_epochs,
            learning_rate=cfg.pretrain_lr,
            batch_size=cfg.pretrain_batch_size,
            grad_accum=1,
            weight_decay=0.01,
        )
        args = training_arguments(work / "trainer", pretraining, seed=cfg.seed, progress=progress)
        trainer = make_trainer(model, args, FeatureDataset(features), PadCollator(pad_id_of(tokenizer)))
        result = train(trainer, None)  # an interrupted build starts over (about a minute)
        model.save_pretrained(work / "model", safe_serialization=True)
        tokenizer.save_pretrained(work / "model")
        write_json(
            work / "model" / "knowundo_tiny.json",
            {
                "tiny": cfg.__dict__,
                "recipe": RECIPE_VERSION,
                "device": describe(),
                "pretrain_loss": result.training_loss,
                "pretrain_sequences": len(features),
                "versions": library_versions(),
            },
        )
        shutil.rmtree(work / "trainer", ignore_errors=True)
        if out_dir.exists():  # another process finished first: keep its copy
            return out_dir
        os.replace(work / "model", out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir


def is_built(cfg: TinyConfig) -> bool:
    return (tiny_path(cfg) / "knowundo_tiny.json").is_file()


def ensure_tiny(cfg: TinyConfig, progress: bool = True) -> Path:
    """Build the tiny base once (about a minute on 2 cores); later calls return the cached copy."""
    path = tiny_path(cfg)
    if not is_built(cfg):
        build_tiny(cfg, path, progress=progress)
    return path
