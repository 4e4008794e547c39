"""One model shared by several detectors (`stages.SharedBatcher`): calls that come
together run as one batch, each caller gets its own results, a lone call is not held back."""

from __future__ import annotations

import threading
import time

import numpy as np

from streamguard.stages import SharedBatcher


class SlowModel:
    """Returns each input doubled, 50 ms a batch; records the batch sizes."""

    def __init__(self, fail: bool = False):
        self.sizes: list[int] = []
        self.fail = fail

    def batch(self, images):
        self.sizes.append(len(images))
        time.sleep(0.05)
        if self.fail:
            raise ValueError("the model broke")
        return [2 * x for x in images]


def _together(batcher, inputs):
    results = [None] * len(inputs)

    def call(k):
        results[k] = batcher.batch(inputs[k])

    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
        time.sleep(0.005)  # they come while the first batch runs
    for t in threads:
        t.join()
    return results


def test_calls_that_come_together_run_as_one_batch_and_each_gets_its_own_results():
    model = SlowModel()
    batcher = SharedBatcher(model, "test")
    try:
        inputs = [[1, 2], [10], [20, 30, 40], [5]]
        results = _together(batcher, inputs)
    finally:
        batcher.close()
    assert results == [[2, 4], [20], [40, 60, 80], [10]]
    # the first call runs alone (nobody waits for company); the rest came while it ran
    assert model.sizes == [2, 5] and batcher.batches == 2 and batcher.largest == 5


def test_a_lone_call_runs_at_once():
    model = SlowModel()
    batcher = SharedBatcher(model, "test")
    try:
        t = time.perf_counter()
        assert batcher(3) == 6
        assert time.perf_counter() - t < 0.5
    finally:
        batcher.close()
    assert model.sizes == [1]


def test_a_failing_model_fails_every_caller_of_its_batch():
    batcher = SharedBatcher(SlowModel(fail=True), "test")
    errors = []

    def call(x):
        try:
            batcher.batch([x])
        except ValueError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=call, args=(x,)) for x in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert errors == ["the model broke"] * 3


def test_torch_detectors_of_several_streams_share_one_model_and_find_what_each_finds_alone():
    from media import load_rgb

    from streamguard.config import DetectConfig
    from streamguard.detect import create_detector
    from streamguard.detect import torch_blazeface

    cfg = DetectConfig(runtime="torch", device="cpu", tile_every=1)
    images = [load_rgb("multi_face.jpg"), load_rgb("obama.jpg"), load_rgb("biden.jpg")]
    alone = []
    for image in images:
        det = create_detector(cfg)
        alone.append(det.detect(image, 0))
        det.close()
    assert not torch_blazeface._SHARED  # the last detector closed the shared model
    dets = [create_detector(cfg) for _ in images]
    try:
        assert dets[0]._tiles is dets[1]._tiles is dets[2]._tiles  # one model
        found = [None] * len(images)

        def run(k):
            found[k] = dets[k].detect(images[k], 0)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(len(images))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        shared = dets[0]._tiles
        assert shared.calls > shared.batches  # some calls of different streams ran together
    finally:
        for det in dets:
            det.close()
    for a, b in zip(alone, found):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.05)
        np.testing.assert_allclose(a.score, b.score, atol=1e-4)
    assert not torch_blazeface._SHARED


def test_an_empty_call_returns_nothing():
    batcher = SharedBatcher(SlowModel(), "test")
    try:
        assert batcher.batch([]) == []
    finally:
        batcher.close()
