"""The container code of the dog-breed pipeline: what its SageMaker jobs and endpoint run.

The thin entry files beside this package (train.py, preprocess.py, evaluate.py, inference.py,
compare_deployed.py, check_rules.py) are what the jobs start; the code lives here. The host
imports `contract`, `archive` and `layout` from it, so this file and those modules stay
standard library only: importing them never pulls torch into the host.
"""
