"""Video I/O: probing headers, decoding fixed-length clips, writing real codecs."""

from raydistill.video.decode import DecodeError, decode_clip, resize_center_crop, sample_indices
from raydistill.video.io import encode_video, write_video
from raydistill.video.probe import ProbeError, VideoInfo, probe_video

__all__ = [
    "DecodeError", "ProbeError", "VideoInfo", "decode_clip", "encode_video", "probe_video",
    "resize_center_crop", "sample_indices", "write_video",
]
