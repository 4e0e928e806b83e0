"""Training data: a split's rows and labels, and its batches streamed from the stacks or held
on the device, which must agree batch for batch."""

import numpy as np
import pandas as pd
import pytest
import torch

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.particles.batches import (
    ResidentBatches,
    StreamedBatches,
    batch_indices,
    batch_source,
    keep_on_device,
    select_split,
    value_range,
)

CPU = torch.device("cpu")


@pytest.fixture()
def stacks(tmp_path):
    """23 2-D 6x5 images in two stacks; every 3rd row is val, class numbers cycle 1..3."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(23, 6, 5)).astype(np.float32)
    P.write_stack(tmp_path / "a.mrcs", images[:15], 10.0)
    P.write_stack(tmp_path / "b.mrcs", images[15:], 10.0)
    refs = [P.image_reference(i, "a.mrcs") for i in range(15)]
    refs += [P.image_reference(i, "b.mrcs") for i in range(8)]
    table = pd.DataFrame(
        {
            P.IMAGE: refs,
            P.CLASS_NUMBER: [1 + i % 3 for i in range(23)],
            "rlnAngleRot": 0.0,
            "rlnAngleTilt": 0.0,
            "rlnAnglePsi": 0.0,
            P.CLASS_NAME: [f"c{1 + i % 3}" for i in range(23)],
            P.SPLIT: ["val" if i % 3 == 0 else "train" for i in range(23)],
        }
    )
    return table, P.ParticleImages(table, tmp_path / "t.star", box_ndim=2), images


def test_select_split_gives_rows_and_zero_based_labels(stacks):
    table, _, _ = stacks
    val = select_split(table, "val")
    assert val.rows.tolist() == list(range(0, 23, 3))
    assert val.labels.tolist() == [0] * len(val)  # rows 0, 3, 6, ... have class number 1
    assert len(select_split(table, "unseen")) == 0
    with pytest.raises(ValueError, match="split 'holdout'"):
        select_split(table, "holdout")


def test_streamed_and_resident_batches_agree(stacks):
    table, images, pixels = stacks
    train = select_split(table, "train")
    streamed = StreamedBatches(images, train, CPU)
    resident = ResidentBatches(images, train, CPU)
    order = list(batch_indices(len(train), 4, torch.Generator().manual_seed(3)))
    seen = 0
    for (xs, ys), (xr, yr), idx in zip(
        streamed.iterate(order), resident.iterate(order), order, strict=True
    ):
        assert xs.shape == (len(idx), 1, 6, 5)
        torch.testing.assert_close(xs, xr, rtol=0, atol=0)
        assert torch.equal(ys, yr)
        expected = pixels[train.rows[idx.numpy()]]
        np.testing.assert_array_equal(xs[:, 0].numpy(), expected)
        assert torch.equal(ys, torch.from_numpy(train.labels[idx.numpy()]))
        seen += len(idx)
    assert seen == len(train)


def test_streamed_batches_report_read_errors(stacks, tmp_path):
    table, _, _ = stacks
    (tmp_path / "b.mrcs").write_bytes(b"not an MRC file" * 100)
    images = P.ParticleImages(table, tmp_path / "t.star", box_ndim=2)
    streamed = StreamedBatches(images, select_split(table, "train"), CPU)
    with pytest.raises(InputError, match="b.mrcs: not a valid MRC stack"):
        list(streamed.iterate([torch.arange(len(streamed))]))


def test_streamed_batches_can_be_kept(stacks):
    """Each batch is a tensor of its own: keeping them all, or leaving an iteration unfinished
    and starting another, leaves every batch as it was read."""
    table, images, pixels = stacks
    train = select_split(table, "train")
    streamed = StreamedBatches(images, train, CPU)
    order = list(batch_indices(len(train), 4, torch.Generator().manual_seed(5)))
    abandoned = streamed.iterate(order)
    first, _ = next(abandoned)  # its read-ahead of batch 2 is still pending
    kept = list(streamed.iterate(order))
    for (x, _), idx in zip(kept, order, strict=True):
        np.testing.assert_array_equal(x[:, 0].numpy(), pixels[train.rows[idx.numpy()]])
    np.testing.assert_array_equal(first[:, 0].numpy(), pixels[train.rows[order[0].numpy()]])
    abandoned.close()


def test_batch_source_streams_or_holds_as_told(stacks):
    table, images, _ = stacks
    train = select_split(table, "train")
    assert isinstance(batch_source(images, train, CPU, resident=False), StreamedBatches)
    assert isinstance(batch_source(images, train, CPU, resident=True), ResidentBatches)
    assert not keep_on_device(10, CPU)  # the CPU streams from the page cache


def test_value_range_covers_every_chunk(stacks, monkeypatch):
    table, images, pixels = stacks
    monkeypatch.setattr(
        "cryoavae.particles.batches.CHUNK_BYTES", 3 * images.item_bytes
    )  # 3 images a chunk
    rows = select_split(table, "train").rows
    assert value_range(images, rows) == (pixels[rows].min(), pixels[rows].max())
