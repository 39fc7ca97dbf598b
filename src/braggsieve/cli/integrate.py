"""``braggsieve integrate``: the azimuthal profile (or sigma-clipped background) of one frame, as CSV."""
from __future__ import annotations

import argparse
import sys

from . import common

DESCRIPTION = """\
Integrate one frame azimuthally into a radial profile, written as CSV with the header
    radial,mean,std,sem,count
radial: bin centre in UNIT (bins uniform in UNIT, as pyFAI); mean: weighted mean of the normalised intensity
I/norm in the bin (norm = flat x solid angle x polarisation x absorption x normalisation factor; photons
when --gain is given); std: standard deviation of one pixel's normalised value (error model --error-model);
sem: standard error of the mean; count: pixels in the bin (fractions of pixels with --split bbox).  Bins
without any valid pixel have count 0 and empty (NaN) mean, std and sem.

Without --cutoff-clip the frame is integrated; with it, it is sigma-clipped: up to --cycles times, pixels
farther than k std from the bin mean are discarded, k = max(K, sqrt(2 ln(n / sqrt(2 pi)))) (Chauvenet,
n = pixels left in the bin; K = 0 is pure Chauvenet), as pyFAI's sigma_clip_ng: the clipped mean is the
background under the Bragg peaks.  The run's provenance (program, version, parameters, geometry, inputs,
times) goes to OUT.json next to OUT.csv."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("integrate", help="azimuthal profile or sigma-clipped background of one frame "
                                   "(CSV)", description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_processing_options(parser, "integrate")
    group = parser.add_argument_group("output")
    group.add_argument("--frame", type=int, default=0, metavar="I",
                       help="which of the selected frames to integrate, 0-based over all inputs taken together "
                            "(after --frames; negative counts from the end) (default: 0)")
    group.add_argument("-o", "--output", required=True, metavar="OUT.csv", help="CSV file to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from ..engine.device import select_engine
    from ..errors import ParameterError
    from ..io.atomic import atomic_outputs

    output = str(args.output)
    if not output.endswith(".csv"):
        raise ParameterError(f"-o {output}: the output must end in .csv")
    source = common.open_source(args)
    setup = common.load_geometry_and_corrections(args, source)
    clipping = args.cutoff_clip is not None or "cutoff_clip" in common.config_table(args)
    index = args.frame + source.nframes if args.frame < 0 else args.frame
    if not 0 <= index < source.nframes:
        raise ParameterError(f"--frame {args.frame}: only {source.nframes} frame(s) selected in "
                             f"{source.sources[0]}" + (" ..." if len(source.sources) > 1 else ""))
    frame = np.empty((1, *source.shape), source.dtype)
    ids = source.read_into(frame, index)
    source.close()
    provenance = setup.provenance(source, argv=sys.argv)
    engine = select_engine(setup.device, setup.binning, setup.corrections, setup.integration, setup.clip)
    profile = engine.sigma_clip(frame) if clipping else engine.integrate(frame)
    table = np.column_stack([profile.radial, profile.mean[0], profile.std[0], profile.sem[0], profile.count[0]])
    provenance = provenance.finish()
    record = {**provenance.to_dict(), "frame": {"file": source.sources[int(ids.source[0])],
                                                "index": int(ids.index[0]), "sigma_clipped": clipping}}
    stem = output[:-len(".csv")]
    with atomic_outputs([output, stem + ".json"]) as (csv_tmp, json_tmp):
        np.savetxt(csv_tmp, table, delimiter=",", header="radial,mean,std,sem,count", comments="",
                   fmt=["%.9g", "%.9g", "%.9g", "%.9g", "%.6g"])
        json_tmp.write_text(json.dumps(record, indent=2) + "\n")
    filled = int((profile.count[0] > 0).sum())
    print(f"{'sigma-clipped' if clipping else 'integrated'} frame {index} of {source.sources[0]}: "
          f"{len(table)} bins ({filled} with pixels) in {setup.integration.unit}, error model "
          f"{profile.error_model}; wrote {output} and {stem}.json")
    return 0

