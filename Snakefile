# cellspot: 3D time-lapse microscopy of cells and their RNA, from TIFF to statistics.
#
#   snakemake --profile profiles/local        # this machine
#   snakemake --profile profiles/slurm        # a SLURM cluster
#   snakemake --profile profiles/local -n     # dry run: the jobs that would run
#
# Stages (one file each under workflow/rules/), logic in src/cellspot/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/track.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/publish.smk"


rule all:
    default_target: True
    input:
        expand(TARGETS, batch=sorted(BATCHES)),
