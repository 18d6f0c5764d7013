"""mem4d.scene: a scene memory for video world models on top of the online 4D reconstructor.

A world-model loop writes every frame (observed or generated) as an `Observation` and, before
generating the next view, asks a `Query`; the answer (`Conditioning`) holds a static render
of the fused scene, retrieved past frames, episodic keyframes, the recent working window and
persistent dynamic-subject records predicted to the query time. See SCENE_MEMORY.md.

Example::

    >>> import numpy as np
    >>> from mem4d.scene import SceneMemory, Observation, Query
    >>> K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    >>> mem = SceneMemory()
    >>> _ = mem.write(Observation(t=0, rgb=np.zeros((48, 64, 3)), K=K, c2w=np.eye(4),
    ...                           depth=np.full((48, 64), 3.0)))
    >>> mem.stats().n_frames
    1
"""

from .adapters import observation_from_frame_output, write_frame_output
from .camera_utils import frustum_overlap, plucker, relative_pose
from .config import SceneMemoryConfig
from .memory import SceneMemory
from .types import (
                    Conditioning,
                    DetectionReport,
                    Exemplar,
                    FrameRef,
                    MemoryStats,
                    Observation,
                    Query,
                    StaticRender,
                    SubjectEvent,
                    SubjectView,
                    WriteReport,
)

__all__ = [
                    "Conditioning",
                    "DetectionReport",
                    "Exemplar",
                    "FrameRef",
                    "MemoryStats",
                    "Observation",
                    "Query",
                    "SceneMemory",
                    "SceneMemoryConfig",
                    "StaticRender",
                    "SubjectEvent",
                    "SubjectView",
                    "WriteReport",
                    "frustum_overlap",
                    "observation_from_frame_output",
                    "plucker",
                    "relative_pose",
                    "write_frame_output",
]
