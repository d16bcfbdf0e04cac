"""`knowundo check`: what a run will need, checked in seconds and without training, so that a 7B run does not
fail after hours on a GPU. Reads the model's configuration (never its weights) and its tokenizer, counts
parameters on the meta device, estimates peak memory per method, renders the prompt template on a sample item and
checks the answer mask, loads and validates the data, and loads every named lm-eval task offline.

Peak memory estimate (bytes, for one process; b sequences of s tokens per micro-batch, L layers, hidden h, a
attention heads, vocabulary V, e = bytes per element of the model dtype):
  weights      N · e
  LoRA         n · 4 · (1 + 1 + 2)          fp32 adapter, its gradient, AdamW's two moments (+ n · 4 per frozen
                                             reference copy when the method reads reference outputs)
  full weights N · 4 · (1 + 1 + 2)          instead of both lines above for an `unlearn.full_parameters` row: every
                                             weight in fp32 with its gradient and moments (+ N · e for the frozen
                                             reference model)
  activations  L · b·s·h · (34 + 5·a·s/h) · e/2   per trained side (Korthikanti et al. 2022, arXiv 2205.05198);
               with gradient checkpointing L · b·s·h · e + one layer's share
  logits       b·s·V · (e + 4 + 4)          the logits, their float32 copy for the loss, and its gradient
A method backpropagates its forget side before the retain side's forward pass, so the activation peak is the
larger of its sides (the forget side counts twice for a method with alternative answers); a reference forward
adds its logits. The estimate leaves out the allocator's fragmentation and the CUDA context (~1-2 GB).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from knowundo.config import Config, validate
from knowundo.data.format import IGNORE, Formatter, resolve_template
from knowundo.data.knowundo import DataSource, check_domain, load_domain
from knowundo.data.selection import request_groups, requested_instances
from knowundo.distributed import per_process_batch
from knowundo.errors import KnowUndoError
from knowundo.layout import RunLabel
from knowundo.methods import check_label, get_method, method_params, trained_sides
from knowundo.models.load import (
    DTYPES,
    check_oracle_model,
    load_model_config,
    load_tokenizer,
    prepare_base,
    resolve_model_path,
    resolved_dtype,
)
from knowundo.placement import describe

GB = 1024**3
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass
class Preflight:
    """What `knowundo check` prints (``lines``) and the problems it found (one line each)."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def attempt(self, what: str, work):
        """Run one check; a user error becomes a problem line instead of stopping the others."""
        try:
            return work()
        except KnowUndoError as exc:
            self.problems.append(f"{what}: {exc}")
        return None


def _model_and_tokenizer(cfg: Config):
    """(model config, tokenizer) without weights: the tiny model's from its settings, any other from its files."""
    from transformers import AutoTokenizer

    if cfg.model.name == "tiny":
        from knowundo.models.tiny import is_built, tiny_model_config, tiny_path, train_tokenizer

        built = is_built(cfg.tiny)
        tokenizer = AutoTokenizer.from_pretrained(tiny_path(cfg.tiny)) if built else train_tokenizer(cfg.tiny)
        return tiny_model_config(cfg.tiny, tokenizer), tokenizer
    if cfg.model.name == "smollm2":  # its config and tokenizer are in the converted directory (made once)
        prepare_base(cfg)
    return load_model_config(resolve_model_path(cfg), cfg.model.trust_remote_code), load_tokenizer(cfg)


def parameter_counts(cfg: Config, model_config) -> tuple[int, int]:
    """(model parameters, LoRA parameters) counted on the meta device: nothing is allocated."""
    import torch
    from transformers import AutoModelForCausalLM

    from knowundo.models.load import attach_lora

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config, trust_remote_code=cfg.model.trust_remote_code)
        total = sum(p.numel() for p in model.parameters())
        lora = attach_lora(model, cfg).get_nb_trainable_parameters()[0]
    return total, lora


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    heads: int
    vocab: int

    @classmethod
    def of(cls, model_config) -> Shape:
        text = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
        return cls(text.num_hidden_layers, text.hidden_size, text.num_attention_heads, text.vocab_size)


def activation_bytes(shape: Shape, batch: int, seq: int, element: int, checkpointing: bool) -> float:
    per_layer = batch * seq * shape.hidden * (34 + 5 * shape.heads * seq / shape.hidden) * element / 2
    layers = (
        (shape.layers * batch * seq * shape.hidden * element + per_layer) if checkpointing else shape.layers * per_layer
    )
    return layers + batch * seq * shape.vocab * (element + 8)


def peak_bytes(row: RunLabel | None, cfg: Config, total: int, lora: int, shape: Shape, checkpointing: bool) -> float:
    """The estimate of the module docstring for one row (its own settings and parameters; None: the fine-tune)."""
    element = BYTES[resolved_dtype(cfg.model.dtype)]
    train = cfg.finetune if row is None else cfg.unlearn.for_method(row.method, row.label)
    batch = per_process_batch(train.batch_size, train.grad_accum)[0]
    seq = cfg.model.max_length
    side = activation_bytes(shape, batch, seq, element, checkpointing)
    if row is None:
        return total * element + lora * 16 + side
    # trained weights: fp32 copy, gradient and two Adam moments (16 bytes each); a full-parameter row trains all of
    # them in fp32 (no second copy in the model's dtype) and keeps its reference as a whole model in that dtype
    trained = total if train.full_parameters else lora
    fixed = (0 if train.full_parameters else total * element) + trained * 16
    method = get_method(row.method)
    referenced = method.reference_sides(method_params(cfg.unlearn.method_args, row.method, row.label))
    reference = (trained * (element if train.full_parameters else 4) + batch * seq * shape.vocab * element) * bool(
        referenced
    )
    # the forget side (with its alternative answers) is at least as large as the retain side
    return fixed + reference + len([s for s in trained_sides(method) if s != "retain"]) * side


def visible_memory() -> int | None:
    """Free memory of this process's GPU in bytes, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.mem_get_info(torch.cuda.current_device())[0]


def check_template(cfg: Config, tokenizer, item: dict) -> str:
    """Render one item; the labels must be exactly the answer's tokens and the token that ends it (EOS, or the
    chat template's end of turn)."""
    formatter = Formatter(tokenizer, cfg.model.template, cfg.model.max_length)
    encoded = formatter.encode(item)
    if encoded is None:
        raise KnowUndoError(f"no answer token fits in model.max_length={cfg.model.max_length}")
    answer = [t for t in encoded["labels"] if t != IGNORE]
    expected = formatter.answer_ids(item["labels"], item["text"])[: len(answer)]
    prompt = encoded["labels"][: len(encoded["labels"]) - len(answer)]
    if answer != expected or any(t != IGNORE for t in prompt) or encoded["truncated"]:
        raise KnowUndoError(
            "the answer mask does not cover exactly the answer tokens and the end token on a sample item"
        )
    return tokenizer.decode(encoded["input_ids"][: len(prompt)])


def check_tasks(tasks: list[str]) -> list[str]:
    """One problem per lm-eval task that is unknown or whose data is not in the local cache."""
    from knowundo.evaluate.general import load_task

    problems = []
    for task in tasks:
        try:
            load_task(task)
        except KnowUndoError as exc:
            problems.append(f"eval.general_tasks: {exc}")
    return problems


def preflight(cfg: Config, memory: int | None = None, rows: list[str] | None = None) -> Preflight:
    """Every check, each independent of the others (``memory``: the accelerator memory to compare with; the
    visible GPU's by default)."""
    report = Preflight(problems=list(validate(cfg)))
    rows = rows if rows is not None else list(cfg.run.methods)
    labels = [
        label
        for label in (report.attempt(f"run.methods {row}", lambda r=row: RunLabel.parse(r)) for row in rows)
        if label is not None
    ]
    for label in labels:
        report.attempt(
            f"run.methods {label.label}",
            lambda lab=label: (check_label(lab), method_params(cfg.unlearn.method_args, lab.method, lab.label)),
        )
    loaded = report.attempt("model", lambda: _model_and_tokenizer(cfg))
    if loaded is not None:
        model_config, tokenizer = loaded
        _memory_plan(cfg, model_config, labels, report, memory)
    source = report.attempt("data", lambda: DataSource.from_config(cfg.data))
    for domain in cfg.run.domains:
        data = None
        if source is not None:
            data = report.attempt(f"data {domain}", lambda d=domain: load_domain(source, check_domain(d, source)))
        if data is not None:
            counts = ", ".join(f"{scope} {len(s['train'])}+{len(s['val'])}" for scope, s in data.items())
            report.lines.append(f"data {domain}: {cfg.data.source} ({counts} train+val items)")
            unlearn = data["unlearn"]["train"] + data["unlearn"]["val"]
            requested = None
            if cfg.data.forget_fraction < 1:
                requested = report.attempt(
                    f"data.forget_fraction {domain}",
                    lambda u=unlearn: requested_instances(u, cfg.data.forget_fraction, cfg.data.seed),
                )
                if requested is not None:
                    every = len({item["instance"] for item in unlearn})
                    report.lines.append(f"forget set {domain}: {len(requested)} of {every} instances requested")
            fraction_failed = cfg.data.forget_fraction < 1 and requested is None  # its problem is listed already
            if cfg.run.requests > 1 and not fraction_failed:
                groups = report.attempt(
                    f"run.requests {domain}",
                    lambda u=unlearn, r=requested: request_groups(u, r, cfg.run.requests, cfg.data.seed),
                )
                if groups is not None:
                    sizes = ", ".join(str(len(group)) for group in groups)
                    report.lines.append(f"requests {domain}: {len(groups)} one after another, of {sizes} instances")
            if loaded is not None:
                template = resolve_template(cfg.model.template, tokenizer)
                named = template if template == cfg.model.template else f"{cfg.model.template} -> {template}"
                prompt = report.attempt(
                    f"template {named}", lambda d=data: check_template(cfg, tokenizer, d["unlearn"]["val"][0])
                )
                if prompt is not None:
                    end = "EOS" if template == "plain" else "end of turn"
                    report.lines.append(f"template {named}: prompt {prompt!r} + answer + {end}, mask exact")
    if cfg.run.oracle_model and loaded is not None:
        report.attempt("run.oracle_model", lambda: check_oracle_model(cfg, cfg.run.oracle_model, loaded[1]))
    report.problems += check_tasks(list(cfg.eval.general_tasks))
    if cfg.eval.general_tasks:
        report.lines.append(f"lm-eval tasks: {', '.join(cfg.eval.general_tasks)}")
    return report


def _memory_plan(cfg: Config, model_config, rows: list[RunLabel], report: Preflight, memory: int | None) -> None:
    if cfg.model.dtype not in DTYPES:
        report.problems.append(f"model.dtype must be one of {', '.join(DTYPES)}, got {cfg.model.dtype!r}")
        return
    counted = report.attempt("model", lambda: parameter_counts(cfg, model_config))
    if counted is None:
        return
    total, lora = counted
    shape = Shape.of(model_config)
    memory = memory if memory is not None else visible_memory()
    report.lines.append(
        f"model {cfg.model.name}: {total / 1e6:,.1f}M parameters ({shape.layers} layers, hidden "
        f"{shape.hidden}, vocab {shape.vocab}), {resolved_dtype(cfg.model.dtype)} on "
        f"{describe()}; LoRA r {cfg.lora.r}"
        f"{f' in the top {cfg.lora.top_layers} layers' if cfg.lora.top_layers else ''}"
        f"{' + embedding rows' if cfg.lora.train_embeddings else ''}: {lora / 1e6:,.2f}M trainable"
    )
    where = f"{memory / GB:.1f} GB free on the GPU" if memory is not None else "no GPU visible"
    report.lines.append(f"estimated peak memory per process, GB (plain / gradient checkpointing; {where}):")
    for row in [None, *rows]:
        name = "finetune" if row is None else row.label
        if (
            row is not None
            and report.attempt(
                name,
                lambda r=row: get_method(r.method).resolve(
                    method_params(cfg.unlearn.method_args, r.method, r.label), model_config
                ),
            )
            is None
        ):
            continue  # parameters that do not fit this model (an RMU layer beyond its depth)
        train = cfg.finetune if row is None else cfg.unlearn.for_method(row.method, row.label)
        plain, saved = (peak_bytes(row, cfg, total, lora, shape, c) for c in (False, True))
        report.lines.append(f"  {name:15} {plain / GB:8.2f} / {saved / GB:8.2f}")
        needed = saved if train.gradient_checkpointing else plain
        if memory is not None and needed > memory:
            report.problems.append(
                f"{name}: estimated peak {needed / GB:.1f} GB exceeds the {memory / GB:.1f} GB "
                f"free" + ("" if train.gradient_checkpointing else "; try gradient_checkpointing=true")
            )
