"""Footage libraries: keyframe segments (`segments`), their run on a Ray cluster
(`distributed`, the only module importing ray) and the manifest that lets a rerun skip
finished outputs (`manifest`)."""
