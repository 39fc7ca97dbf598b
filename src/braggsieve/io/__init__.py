"""braggsieve.io: reading frames and static maps, writing results; knows files, not statistics.

Readers (docs/inputs.md):
    frames      ``open_frames(paths, h5path, frames) -> FrameSource``: HDF5/NeXus, Eiger master files and fabio
                formats as one sequence of frames, frame ranges, batches, ``read_into`` a caller's buffer.
    metadata    ``read_detector_metadata(path) -> DetectorMetadata``: NXmx and miniCBF geometry, saturation and
                the file's own pixel mask.
    images      ``load_image(path, h5path, shape)``: dark, flat, variance, absorption and gain maps.
    masks       ``load_mask(path, shape, cell)``: bool masks, True = bad, from braggsieve, NeXus and plain files.
    provenance  ``Provenance`` and ``write_provenance``: what every output records.
Writers: atomic (temporary name, rename when complete), sparse, cxi, mask_file.

Modules are imported explicitly (``from braggsieve.io.frames import open_frames``) so that using one reader
does not load the others.
"""
