"""The customer record: customers, identities, cases and their cross-channel timeline."""

from cases.identities import IdentityRef, InvalidIdentity, is_withheld_caller
from cases.merge import CustomerMerger
from cases.service import CaseError, CaseService, NotFound, NumberChange, Resolution

__all__ = [
    "CaseError",
    "CaseService",
    "CustomerMerger",
    "IdentityRef",
    "InvalidIdentity",
    "NotFound",
    "NumberChange",
    "Resolution",
    "is_withheld_caller",
]
