"""Build a detector for a box method from its config subtree.

A detector has `name`, `batch_size` and `detect(list[PIL.Image]) -> list[Detections]`, with
boxes normalised to each image as displayed. `method_config` is the part of config `boxes:`
that the method uses, e.g. {"saliency": {...}} or, for hybrid, {"yolo":…, "saliency":…, "hybrid":…}.
"""

from __future__ import annotations

from cirflow.errors import CirflowError

METHODS = ("saliency", "yolo", "hybrid")
# Which config sections of `boxes:` each method reads (the rest must not trigger reruns).
METHOD_SECTIONS = {
    "saliency": ("saliency",),
    "yolo": ("yolo",),
    "hybrid": ("yolo", "saliency", "hybrid"),
}


def method_config(boxes_config: dict, method: str) -> dict:
    """The subtree of `boxes:` a method uses."""
    check_method(method)
    return {s: boxes_config.get(s, {}) for s in METHOD_SECTIONS[method]}


def check_method(method: str) -> None:
    if method not in METHODS:
        raise CirflowError(f"unknown box method {method!r}: expected one of {', '.join(METHODS)}")


def uses_gpu(method: str) -> bool:
    return method in ("yolo", "hybrid")


def make_detector(method: str, config: dict):
    check_method(method)
    if method == "saliency":
        from cirflow.boxes.saliency import SaliencyDetector

        return SaliencyDetector(**config.get("saliency", {}))
    if method == "yolo":
        from cirflow.boxes.yolo import YoloDetector

        return YoloDetector(**config.get("yolo", {}))
    from cirflow.boxes.hybrid import HybridDetector

    return HybridDetector(config)
