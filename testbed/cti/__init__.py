"""The CTI contracts' Python side: artifacts, deployment and typed wrappers.

Public API (nothing runs at import time):
    deploy(rpc_url, chain_id, operator_private_key, founding) -> Deployment
    deploy_with(w3, chain_id, operator_private_key, founding) -> Deployment
    Deployment.save(path) / Deployment.load(path); check_deployed(w3, deployment)
    CtiClient(w3, deployment, private_key): one account's operations and views
    ContractRevert: a revert, with the Solidity error name and a plain reason
"""

from testbed.cti.client import CtiClient
from testbed.cti.deploy import Deployment, check_deployed, connect, deploy, deploy_with
from testbed.cti.errors import ContractRevert
from testbed.cti.model import Kind, Listing, Org, Role, Sent, Task, TaskState

__all__ = [
    "ContractRevert", "CtiClient", "Deployment", "Kind", "Listing", "Org", "Role", "Sent", "Task", "TaskState",
    "check_deployed", "connect", "deploy", "deploy_with",
]
