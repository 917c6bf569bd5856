# Crop to the brain, split large volumes into octants, write training TFRecords.


rule autocrop:
    input:
        unpack(get_subject_files),
    output:
        dmri="results/preprocessed/{subject}/data.nii.gz",
        bvals="results/preprocessed/{subject}/bvals",
        bvecs="results/preprocessed/{subject}/bvecs",
        mask="results/preprocessed/{subject}/nodif_brain_mask.nii.gz",
        box="results/preprocessed/{subject}/crop_box.json",
    log:
        "logs/autocrop/{subject}.log",
    benchmark:
        "benchmarks/autocrop/{subject}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        slab=lambda wildcards: design.test_slab(config, wildcards.subject),
    script:
        "../scripts/autocrop.py"


rule crop_truth:
    input:
        unpack(get_truth_files),
        box="results/preprocessed/{subject}/crop_box.json",
    output:
        tissue="results/preprocessed/{subject}/tissue.nii.gz",
        fibre_dirs="results/preprocessed/{subject}/fibre_dirs.nii.gz",
        fibre_fractions="results/preprocessed/{subject}/fibre_fractions.nii.gz",
    log:
        "logs/crop_truth/{subject}.log",
    benchmark:
        "benchmarks/crop_truth/{subject}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/crop_truth.py"


rule split_octants:
    input:
        dmri="results/preprocessed/{subject}/data.nii.gz",
        bvals="results/preprocessed/{subject}/bvals",
        bvecs="results/preprocessed/{subject}/bvecs",
        mask="results/preprocessed/{subject}/nodif_brain_mask.nii.gz",
    output:
        parts=temp(directory("results/octants/{subject}")),
    log:
        "logs/split_octants/{subject}.log",
    benchmark:
        "benchmarks/split_octants/{subject}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        max_values=config["preprocess"]["max_tfrecord_values"],
    script:
        "../scripts/split_octants.py"


rule make_tfrecords:
    input:
        parts="results/octants/{subject}",
    output:
        records=temp(directory("results/tfrecords/{subject}")),
    log:
        "logs/make_tfrecords/{subject}.log",
    benchmark:
        "benchmarks/make_tfrecords/{subject}.tsv"
    conda:
        "../../envs/tensorflow.yaml"
    script:
        "../scripts/make_tfrecords.py"
