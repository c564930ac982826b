"""Tiny sources written the way the official archives are, for the source tests (and variants to damage).

CIFAR-10's batches were written by Python 2's cPickle (protocol 2): byte strings as STRING opcodes and NumPy
arrays through ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``. :func:`py2_pickle`
writes exactly those opcodes, so the tests read what the real files hold.
"""

import io
import struct
import tarfile
import zipfile

import numpy as np
from PIL import Image

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
OFFICIAL_GLOBALS = {"_reconstruct": b"numpy.core.multiarray\n_reconstruct\n", "ndarray": b"numpy\nndarray\n",
                    "dtype": b"numpy\ndtype\n"}


def py2_pickle(obj) -> bytes:
    """``obj`` (dicts, lists, tuples, ints, str/bytes as Python 2 str, NumPy arrays) as cPickle wrote it."""
    out = [b"\x80\x02"]

    def put(value):
        if value is None or isinstance(value, bool):
            out.append({None: b"N", True: b"\x88", False: b"\x89"}[value])
        elif isinstance(value, int):
            out.append(b"J" + struct.pack("<i", value))
        elif isinstance(value, (bytes, str)):
            raw = value.encode("latin1") if isinstance(value, str) else value
            out.append(b"T" + struct.pack("<I", len(raw)) + raw)
        elif isinstance(value, (tuple, list, dict)):
            out.append({tuple: b"(", list: b"](", dict: b"}("}[type(value)])
            for item in (value.items() if isinstance(value, dict) else value):
                for part in (item if isinstance(value, dict) else (item,)):
                    put(part)
            out.append({tuple: b"t", list: b"e", dict: b"u"}[type(value)])
        elif getattr(value, "__name__", None) in OFFICIAL_GLOBALS:
            out.append(b"c" + OFFICIAL_GLOBALS[value.__name__])
        else:
            func, args, state = value.__reduce__()[:3]
            put(func), put(args), out.append(b"R")
            if state is not None:
                put(state), out.append(b"b")

    put(obj)
    return b"".join(out) + b"."


def cifar10_contents(per_batch=6, seed=0) -> dict:
    """File name -> content of an official-format CIFAR-10 folder with ``per_batch`` images per batch."""
    rng = np.random.default_rng(seed)
    files = {"batches.meta": {b"label_names": [n.encode() for n in CIFAR_NAMES],
                              b"num_cases_per_batch": per_batch, b"num_vis": 3072}}
    for name in CIFAR_FILES:
        files[name] = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, per_batch).tolist(),
                       b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                       b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)]}
    return files


def write_cifar10_archive(path, contents=None, dump=py2_pickle, folder="cifar-10-batches-py"):
    """``contents`` (default :func:`cifar10_contents`) as a .tar.gz; a value that is bytes is written as is."""
    contents = cifar10_contents() if contents is None else contents
    with tarfile.open(path, "w:gz") as archive:
        for name, content in contents.items():
            raw = content if isinstance(content, bytes) else dump(content)
            info = tarfile.TarInfo(f"{folder}/{name}" if folder else name)
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    return path


def jpeg(pixels: np.ndarray, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG")
    return buffer.getvalue()


def tinyimagenet_files(per_class=3, val=4, wnids=("n02", "n01", "n03")) -> dict:
    """Path below ``tiny-imagenet-200/`` -> bytes of an official-layout tree, one grayscale JPEG among them."""
    rng = np.random.default_rng(1)
    files = {"wnids.txt": ("\n".join(wnids) + "\n").encode()}
    images = [f"train/{wnid}/images/{wnid}_{k}.JPEG" for wnid in wnids for k in range(per_class)]
    images += [f"val/images/val_{k}.JPEG" for k in range(val)]
    for i, name in enumerate(images):
        files[name] = jpeg(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "L" if i == 0 else "RGB")
    lines = [f"val_{k}.JPEG\t{wnids[k % len(wnids)]}\t0\t0\t63\t63" for k in range(val)]
    files["val/val_annotations.txt"] = ("\n".join(lines) + "\n").encode()
    return files


def write_tinyimagenet_zip(path, files=None):
    files = tinyimagenet_files() if files is None else files
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(f"tiny-imagenet-200/{name}", data)
    return path


def write_tinyimagenet_folder(root, files=None):
    files = tinyimagenet_files() if files is None else files
    for name, data in files.items():
        (root / "tiny-imagenet-200" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "tiny-imagenet-200" / name).write_bytes(data)
    return root
