"""A run's Parquet shards as Hugging Face ``datasets.Dataset`` objects.

The clip cache, the latent cache and the embeddings store their tensors in Arrow's canonical
fixed-shape-tensor columns (``raydistill.schema.tensor_array``), which pandas, Ray Data and
pyarrow read but ``datasets`` refuses ("does not have a datasets dtype equivalent").
:func:`hf_dataset` reads the shards with pyarrow and hands each tensor column over as the
``datasets`` type of its rank: ``Array2D`` … ``Array5D`` for a clip (T, H, W, 3) or a latent
(T, C, h, w), a fixed-length ``List`` for an embedding (D,). ``datasets`` is imported only here.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raydistill.layout import is_rejects_file
from raydistill.runs import open_fs


def shard_paths(folder: str) -> list[str]:
    """The ``.parquet`` shards under ``folder`` (local or a URL), in name order, without the
    rejects (``_rejects/``, ``rejects.parquet``)."""
    fs, path = open_fs(folder)
    found = sorted(p for p in fs.find(path) if p.endswith(".parquet"))
    return [p for p in found if not is_rejects_file("/" + p[len(path):].lstrip("/"))
            and not p.endswith("/rejects.parquet")]


def hf_columns(table: pa.Table) -> pa.Table:
    """``table`` with every fixed-shape-tensor column turned into what ``datasets`` reads: an
    ``Array{N}D`` extension column for 2 to 5 dimensions, the fixed-size list storage for one.
    ValueError naming a column of another rank."""
    from datasets.features.features import (Array2DExtensionType, Array3DExtensionType,
                                            Array4DExtensionType, Array5DExtensionType)

    array_types = {2: Array2DExtensionType, 3: Array3DExtensionType, 4: Array4DExtensionType,
                   5: Array5DExtensionType}
    for index, field in enumerate(table.schema):
        if not isinstance(field.type, pa.FixedShapeTensorType):
            continue
        column = table.column(index).combine_chunks()
        shape = tuple(field.type.shape)
        if len(shape) == 1:
            converted = column.storage
        elif len(shape) in array_types:
            dtype = np.dtype(field.type.value_type.to_pandas_dtype()).name
            target = array_types[len(shape)](shape, dtype)
            converted = pa.ExtensionArray.from_storage(
                target, nested_lists(column.storage.flatten(), shape, len(column)))
        else:
            raise ValueError(f"column {field.name}: {len(shape)}-D tensors have no datasets type")
        table = table.set_column(index, field.name, converted)
    return table


def nested_lists(values: pa.Array, shape: tuple[int, ...], rows: int) -> pa.Array:
    """``rows`` tensors of ``shape`` from their flat ``values``, as nested lists (the storage
    of ``datasets``' ``Array{N}D`` types)."""
    nested = values
    for size in reversed(shape):
        offsets = pa.array(np.arange(0, len(nested) + 1, size, dtype=np.int32))
        nested = pa.ListArray.from_arrays(offsets, nested)
    assert len(nested) == rows
    return nested


def hf_dataset(folder: str):
    """A ``datasets.Dataset`` of every shard under ``folder`` of a run (``RUN/clips/train``,
    ``RUN/latents/train``, ``RUN/embeddings/synthetic/{model}``, …; local or ``s3://``), tensor
    columns included, held in memory: a cache larger than memory is read a shard at a time
    (``hf_dataset`` of one shard's path). FileNotFoundError naming the folder when it holds no
    shard; ImportError saying what to install without ``datasets``."""
    try:
        import datasets
    except ImportError:
        raise ImportError("raydistill.hf needs Hugging Face datasets: pip install datasets") \
            from None
    fs, path = open_fs(folder)
    paths = [path] if path.endswith(".parquet") else shard_paths(folder)
    if not paths:
        raise FileNotFoundError(f"{folder}: no Parquet shards")
    # One shard at a time: a shard's tensors stay within the int32 offsets of list arrays.
    parts = [datasets.Dataset(hf_columns(pq.read_table(p, filesystem=fs))) for p in paths]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
