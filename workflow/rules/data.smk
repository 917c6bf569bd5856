# Subjects: simulated (default), the user's own HCP-layout folders, or the HCP S3 bucket.


rule simulate_subject:
    output:
        multiext(
            "resources/synthetic/{subject}/T1w/Diffusion/",
            dmri="data.nii.gz",
            bvals="bvals",
            bvecs="bvecs",
            mask="nodif_brain_mask.nii.gz",
            tissue="tissue.nii.gz",
            fibre_dirs="fibre_dirs.nii.gz",
            fibre_fractions="fibre_fractions.nii.gz",
        ),
        noiseless=(
            "resources/synthetic/{subject}/T1w/Diffusion/data_noiseless.nii.gz"
            if config["synthetic"]["write_noiseless"]
            else []
        ),
    log:
        "logs/simulate_subject/{subject}.log",
    benchmark:
        "benchmarks/simulate_subject/{subject}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        seed=synthetic_seed,
        settings=config["synthetic"],
    script:
        "../scripts/simulate_subject.py"


# Credentials come from SNAKEMAKE_STORAGE_S3_* / AWS_* variables or --storage-s3-* flags, never from the
# config (checked in common.smk before any job); bucket, prefix, endpoint and region from hcp_s3.*.
# Snakemake asks S3 whether each object exists (and its date) while building the DAG, so a missing
# object stops the run there, naming its key. Downloads land in resources/hcp/ and are not repeated.
if SUBJECTS["source"] == "hcp_s3":

    storage hcp:
        **design.hcp_s3_storage_settings(config),
        provider="s3",

    # On clusters, download on the submit host: compute nodes often have no internet access.
    localrules:
        download_hcp_subject,

    rule download_hcp_subject:
        input:
            dmri=storage.hcp(hcp_s3_url("data.nii.gz")),
            bvals=storage.hcp(hcp_s3_url("bvals")),
            bvecs=storage.hcp(hcp_s3_url("bvecs")),
            mask=storage.hcp(hcp_s3_url("nodif_brain_mask.nii.gz")),
        output:
            dmri="resources/hcp/{subject}/T1w/Diffusion/data.nii.gz",
            bvals="resources/hcp/{subject}/T1w/Diffusion/bvals",
            bvecs="resources/hcp/{subject}/T1w/Diffusion/bvecs",
            mask="resources/hcp/{subject}/T1w/Diffusion/nodif_brain_mask.nii.gz",
        log:
            "logs/download_hcp_subject/{subject}.log",
        benchmark:
            "benchmarks/download_hcp_subject/{subject}.tsv"
        conda:
            "../../envs/data.yaml"
        params:
            urls=hcp_s3_urls,
        script:
            "../scripts/download_hcp_subject.py"
