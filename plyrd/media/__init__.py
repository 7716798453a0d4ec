"""Media processing: what an uploaded file is (probe), its web rendition (transcode) and Subsonic's live transcodes
(live_transcode), both through one set of encoders (encoding), its waveform and loudness (analysis), its lyrics as
text (lyrics) and cover images (artwork).

Everything here is synchronous and CPU-bound, and never touches an event loop: callers run these functions in worker
threads (`asyncio.to_thread` behind a semaphore sized to the cores). PyAV releases the GIL inside codec calls, so
threads give real parallelism. Failures raise the domain errors of `plyrd.errors`, with messages written for the
uploader.
"""
