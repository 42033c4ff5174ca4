"""The verification harness: the case registry, comparison and tolerances, ports and counterparts, goldens.

Needs torchvision (counterparts, metadata) and is loaded only when used: ``import reference`` does not.
"""
