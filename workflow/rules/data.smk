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


# Credentials and endpoint come from SNAKEMAKE_STORAGE_S3_* variables or --storage-s3-* flags, never
# from the config. Snakemake checks that each object exists (and its date) while building the DAG,
# so even a dry run needs valid credentials; nothing is downloaded before a job needs it.
if SUBJECTS["source"] == "hcp_s3":

    rule download_hcp_subject:
        input:
            dmri=storage.s3(hcp_s3_url("data.nii.gz")),
            bvals=storage.s3(hcp_s3_url("bvals")),
            bvecs=storage.s3(hcp_s3_url("bvecs")),
            mask=storage.s3(hcp_s3_url("nodif_brain_mask.nii.gz")),
        output:
            dmri="resources/hcp/{subject}/T1w/Diffusion/data.nii.gz",
            bvals="resources/hcp/{subject}/T1w/Diffusion/bvals",
            bvecs="resources/hcp/{subject}/T1w/Diffusion/bvecs",
            mask="resources/hcp/{subject}/T1w/Diffusion/nodif_brain_mask.nii.gz",
        log:
            "logs/download_hcp_subject/{subject}.log",
        conda:
            "../../envs/data.yaml"
        shell:
            "(cp {input.dmri} {output.dmri} && cp {input.bvals} {output.bvals} && "
            "cp {input.bvecs} {output.bvecs} && cp {input.mask} {output.mask}) 2> {log}"
