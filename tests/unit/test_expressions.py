"""The definition's expression language as the local runner resolves it (no jobs, no I/O)."""

from __future__ import annotations

import pytest

from pipeline.local import expressions as ex

OUTPUTS = {
    "ProcessingOutputConfig": {
        "Outputs": [
            {"OutputName": "train", "S3Output": {"S3Uri": "s3://b/run/data/train"}},
            {"OutputName": "test", "S3Output": {"S3Uri": "s3://b/run/data/test"}},
        ]
    }
}
TRAINING = {
    "ModelArtifacts": {"S3ModelArtifacts": "s3://b/models/job/output/model.tar.gz"},
    "FinalMetricDataList": [
        {"MetricName": "valid:loss", "Value": 0.9},
        {"MetricName": "valid:accuracy", "Value": 0.75},
    ],
}
TUNING = {
    "BestTrainingJob": {
        "TrainingJobName": "hpo-002",
        "TunedHyperParameters": {"learning_rate": "0.0123", "batch_size": '"64"'},
    }
}
EVALUATION = {
    "multiclass_classification_metrics": {"accuracy": {"value": 0.8}},
    "list": [1, {"x": 2}],
}


def context(**parameters) -> ex.Context:
    steps = {"PrepareData": OUTPUTS, "TrainModel": TRAINING, "Tune": TUNING}
    files = {"s3://b/run/evaluation/evaluation.json": EVALUATION}

    def step_properties(name):
        if name not in steps:
            raise ex.ExpressionError(f"step {name} has no properties: it is Skipped")
        return steps[name]

    def read_json(uri):
        if uri not in files:
            raise ex.ExpressionError(f"no object {uri}")
        return files[uri]

    return ex.Context(
        parameters={"ImageSize": 224, "Threshold": 0.7, "Pretrained": True, **parameters},
        execution=lambda name: {"PipelineExecutionId": "local-1"}[name],
        step_properties=step_properties,
        property_file_uri=lambda step, name: "s3://b/run/evaluation/evaluation.json",
        read_json=read_json,
    )


def get(path: str):
    return {"Get": path}


def json_get(path: str):
    return {
        "Std:JsonGet": {
            "PropertyFile": get("Steps.EvaluateModel.PropertyFiles.EvaluationReport"),
            "Path": path,
        }
    }


def test_join_writes_numbers_and_booleans_as_json_and_resolves_nested_values():
    value = {
        "Std:Join": {
            "On": "/",
            "Values": [
                "s3://b/executions",
                get("Execution.PipelineExecutionId"),
                get("Parameters.ImageSize"),
                get("Parameters.Pretrained"),
                get("Parameters.Threshold"),
            ],
        }
    }
    assert ex.resolve(value, context()) == "s3://b/executions/local-1/224/true/0.7"


def test_named_list_items_map_keys_and_indexes_resolve_like_sagemaker():
    ctx = context()
    outputs = "Steps.PrepareData.ProcessingOutputConfig.Outputs"
    assert ex.resolve(get(f"{outputs}['test'].S3Output.S3Uri"), ctx) == "s3://b/run/data/test"
    assert ex.resolve(get(f"{outputs}[0].S3Output.S3Uri"), ctx) == "s3://b/run/data/train"
    metric = "Steps.TrainModel.FinalMetricDataList['valid:accuracy'].Value"
    assert ex.resolve(get(metric), ctx) == 0.75
    tuned = "Steps.Tune.BestTrainingJob.TunedHyperParameters"
    # Categorical values stay JSON-quoted, as SageMaker returns them.
    assert ex.resolve(get(f"{tuned}['batch_size']"), ctx) == '"64"'
    assert ex.resolve({"a": [get(f"{tuned}['learning_rate']")]}, ctx) == {"a": ["0.0123"]}


def test_a_missing_property_names_the_step_the_path_and_what_exists():
    with pytest.raises(ex.ExpressionError) as caught:
        ex.resolve(
            {"S3Uri": get("Steps.TrainModel.ModelArtifacts.S3ModelArtifact")},
            context(),
            "Arguments.ProcessingInputs[1]",
        )
    message = str(caught.value)
    assert "Arguments.ProcessingInputs[1].S3Uri" in message
    assert "Steps.TrainModel.ModelArtifacts.S3ModelArtifact" in message
    assert "S3ModelArtifacts" in message  # what it does have


def test_a_missing_list_item_lists_the_names_there_are():
    path = "Steps.PrepareData.ProcessingOutputConfig.Outputs['valid'].S3Output.S3Uri"
    with pytest.raises(ex.ExpressionError, match=r"no item named 'valid' \(it has: train, test\)"):
        ex.resolve(get(path), context())


def test_a_reference_to_a_step_without_properties_says_why():
    with pytest.raises(ex.ExpressionError, match="Skipped"):
        ex.resolve(get("Steps.Deploy.EndpointName"), context())


def test_json_get_reads_a_property_file_path_with_indexes():
    ctx = context()
    assert ex.resolve(json_get("multiclass_classification_metrics.accuracy.value"), ctx) == 0.8
    assert ex.resolve(json_get("list[1].x"), ctx) == 2


def test_json_get_reads_an_s3_uri_built_by_join():
    uri = {"Std:Join": {"On": "/", "Values": ["s3://b/run/evaluation", "evaluation.json"]}}
    value = {"Std:JsonGet": {"S3Uri": uri, "Path": "multiclass_classification_metrics"}}
    assert ex.resolve(value, context()) == {"accuracy": {"value": 0.8}}


def test_json_get_with_a_wrong_path_names_the_property_file_and_the_path():
    with pytest.raises(ex.ExpressionError) as caught:
        ex.resolve(json_get("multiclass_classification_metrics.acuracy.value"), context())
    assert "acuracy" in str(caught.value)
    assert "EvaluateModel.EvaluationReport" in str(caught.value)


def test_unsupported_functions_are_refused_by_name():
    with pytest.raises(ex.UnsupportedExpression, match="Std:Concat"):
        ex.resolve({"Std:Concat": {"Values": ["a", "b"]}}, context())


def test_unknown_parameters_and_execution_variables_are_refused():
    with pytest.raises(ex.ExpressionError, match="no parameter Nope"):
        ex.resolve(get("Parameters.Nope"), context())
    with pytest.raises(ex.ExpressionError, match="no execution variable Nope"):
        ex.resolve(get("Execution.Nope"), context())
    with pytest.raises(ex.ExpressionError, match="start with Parameters"):
        ex.parse_reference("Step.X.Y")


def comparison(kind: str, left, right) -> dict:
    return {"Type": kind, "LeftValue": left, "RightValue": right}


@pytest.mark.parametrize(
    ("kind", "left", "right", "expected"),
    [
        ("Equals", 3, 3, True),
        ("Equals", "a", "b", False),
        ("GreaterThan", 0.8, 0.7, True),
        ("GreaterThan", 0.7, 0.7, False),
        ("GreaterThanOrEqualTo", 0.7, 0.7, True),
        ("GreaterThanOrEqualTo", 0.69, 0.7, False),
        ("LessThan", 1, 2, True),
        ("LessThan", 2, 2, False),
        ("LessThanOrEqualTo", 2, 2, True),
        ("LessThanOrEqualTo", 3, 2, False),
    ],
)
def test_comparisons(kind, left, right, expected):
    assert ex.evaluate(comparison(kind, left, right), context()) is expected


def test_the_accuracy_condition_compares_a_property_file_value_with_a_float_parameter():
    condition = comparison(
        "GreaterThanOrEqualTo",
        json_get("multiclass_classification_metrics.accuracy.value"),
        get("Parameters.Threshold"),
    )
    assert ex.evaluate(condition, context(Threshold=0.8)) is True
    assert ex.evaluate(condition, context(Threshold=0.81)) is False


def test_numbers_joined_into_text_still_compare_as_numbers():
    joined = {"Std:Join": {"On": "", "Values": [get("Parameters.ImageSize")]}}
    assert ex.evaluate(comparison("GreaterThan", joined, 100), context()) is True
    assert ex.evaluate(comparison("Equals", joined, 224), context()) is True


def test_ordering_a_number_against_text_is_an_error_not_a_guess():
    with pytest.raises(ex.ExpressionError, match="compares numbers"):
        ex.evaluate(comparison("GreaterThan", "abc", 1), context())


def test_in_not_and_or():
    ctx = context()
    is_in = {"Type": "In", "QueryValue": get("Parameters.ImageSize"), "Values": [128, 224]}
    not_in = {"Type": "In", "QueryValue": "x", "Values": ["a", "b"]}
    assert ex.evaluate(is_in, ctx) is True
    assert ex.evaluate(not_in, ctx) is False
    assert ex.evaluate({"Type": "Not", "Condition": not_in}, ctx) is True
    assert ex.evaluate({"Type": "Not", "Condition": is_in}, ctx) is False
    assert ex.evaluate({"Type": "Or", "Conditions": [not_in, is_in]}, ctx) is True
    assert ex.evaluate({"Type": "Or", "Conditions": [not_in, not_in]}, ctx) is False
    # A condition step's list is a conjunction.
    assert ex.evaluate_all([is_in, not_in], ctx) is False
    assert ex.evaluate_all([is_in, is_in], ctx) is True


def test_unsupported_condition_types_are_refused_by_name():
    with pytest.raises(ex.UnsupportedExpression, match="'And'"):
        ex.evaluate({"Type": "And", "Conditions": []}, context())


def test_static_path_check_accepts_what_only_the_run_knows_and_rejects_typos():
    shape = {
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "train", "S3Output": {"S3Uri": ""}}]},
        "Dynamic": {"Get": "Parameters.X"},
        "Summaries": ex.OPEN,
    }
    outputs = ex.parse_reference(
        "Steps.S.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"
    ).path
    ex.check_path(shape, outputs, "S")
    ex.check_path(shape, ex.parse_reference("Steps.S.Dynamic.Anything[3]").path, "S")
    ex.check_path(shape, ex.parse_reference("Steps.S.Summaries[5].TrainingJobName").path, "S")
    with pytest.raises(ex.ExpressionError, match="no item named 'valid'"):
        path = "Steps.S.ProcessingOutputConfig.Outputs['valid'].S3Output.S3Uri"
        ex.check_path(shape, ex.parse_reference(path).path, "S")
    with pytest.raises(ex.ExpressionError, match="no 'S3Url'"):
        path = "Steps.S.ProcessingOutputConfig.Outputs['train'].S3Output.S3Url"
        ex.check_path(shape, ex.parse_reference(path).path, "S")
