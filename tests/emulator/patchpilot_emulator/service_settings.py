"""Service settings: GetServiceSetting, UpdateServiceSetting, ResetServiceSetting (SSM API
Reference), among them Default Host Management Configuration's
``/ssm/managed-instance/default-ec2-instance-management-role``. Split from ``ssm_ext``.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from moto.core.responses import ActionResult, EmptyResult
from moto.ssm.models import SimpleSystemManagerBackend

from .ssm_ext import R, SSMError, _b, now, state, validation

# --- service settings ----------------------------------------------------------------------

# GetServiceSetting / UpdateServiceSetting / ResetServiceSetting: "You can't create a new
# SettingId"; the ids the API reference lists, with the values UpdateServiceSetting accepts
# (None = free text: a role name, a log group name). Defaults: README "Verified only in the
# emulator" (the API reference states none).
DHMC_SETTING = "/ssm/managed-instance/default-ec2-instance-management-role"
SERVICE_SETTINGS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "/ssm/appmanager/appmanager-enabled": ("False", ("True", "False")),
    "/ssm/automation/customer-script-log-destination": ("none", ("CloudWatch",)),
    "/ssm/automation/customer-script-log-group-name": ("/aws/ssm/automation/executeScript", None),
    "/ssm/automation/enable-adaptive-concurrency": ("False", ("True", "False")),
    "/ssm/documents/console/public-sharing-permission": ("Enable", ("Enable", "Disable")),
    "/ssm/managed-instance/activation-tier": ("standard", ("standard", "advanced")),
    # Default Host Management Configuration: off until a role is set ("$None")
    DHMC_SETTING: ("$None", None),
    "/ssm/opsinsights/opscenter": ("Disabled", ("Enabled", "Disabled")),
    "/ssm/parameter-store/default-parameter-tier": ("Standard", ("Standard", "Advanced", "Intelligent-Tiering")),
    "/ssm/parameter-store/high-throughput-enabled": ("false", ("true", "false")),
}
# IAM role name, optionally with its path ("service-role/AWSSystemsManagerDefaultEC2InstanceManagementRole"
# as the console's Quick Setup sets it); an ARN is not a role name.
_ROLE_NAME_RE = re.compile(r"^(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}$")


def _setting_id(backend: SimpleSystemManagerBackend, raw: str) -> str:
    """SettingId as a path or as the setting's ARN
    (arn:aws:ssm:<region>:<account>:servicesetting/ssm/...), e.g. "arn:aws:ssm:us-east-1:111122223333:servicesetting/ssm/parameter-store/high-throughput-enabled"."""
    setting = raw
    prefix = f"arn:aws:ssm:{backend.region_name}:{backend.account_id}:servicesetting"
    if raw.startswith("arn:"):
        setting = raw[len(prefix):] if raw.startswith(prefix + "/") else ""
    if setting not in SERVICE_SETTINGS:
        raise SSMError(
            "ServiceSettingNotFound",
            f"The specified service setting wasn't found: {raw}.",
        )
    return setting


def _setting_json(backend: SimpleSystemManagerBackend, setting: str) -> dict[str, Any]:
    custom = state(backend).service_settings.get(setting)
    data: dict[str, Any] = {
        "SettingId": setting,
        "ARN": f"arn:aws:ssm:{backend.region_name}:{backend.account_id}:servicesetting{setting}",
    }
    if custom is None:
        data.update({"SettingValue": SERVICE_SETTINGS[setting][0], "Status": "Default"})
    else:
        value, modified, user = custom
        # LastModifiedUser: "populated only if the setting value was overwritten"
        data.update({"SettingValue": value, "Status": "Customized", "LastModifiedDate": modified, "LastModifiedUser": user})
    return data


def get_service_setting(self: R) -> ActionResult:
    backend = _b(self)
    return ActionResult({"ServiceSetting": _setting_json(backend, _setting_id(backend, self._get_param("SettingId")))})


def update_service_setting(self: R) -> ActionResult:
    backend = _b(self)
    setting = _setting_id(backend, self._get_param("SettingId"))
    value = self._get_param("SettingValue")
    allowed = SERVICE_SETTINGS[setting][1]
    if allowed is not None and value not in allowed:
        raise validation(f"Invalid value {value} for setting {setting}; valid values: {', '.join(allowed)}.")
    if setting == DHMC_SETTING and not _ROLE_NAME_RE.match(value):
        # "For /ssm/managed-instance/default-ec2-instance-management-role, enter the name of an
        # IAM role."
        raise validation(f"Invalid value {value} for setting {setting}: enter the name of an IAM role.")
    if setting == "/ssm/parameter-store/default-parameter-tier":
        backend.default_parameter_tier = value
    user = f"arn:aws:iam::{backend.account_id}:root"
    state(backend).service_settings[setting] = (value, now(), user)
    return EmptyResult()


def reset_service_setting(self: R) -> ActionResult:
    """ResetServiceSetting: "Reset the service setting for the account to the default value as
    provisioned by the Amazon Web Services service team"; answers the reset setting."""
    backend = _b(self)
    setting = _setting_id(backend, self._get_param("SettingId"))
    state(backend).service_settings.pop(setting, None)
    if setting == "/ssm/parameter-store/default-parameter-tier":
        backend.default_parameter_tier = "Standard"
    data = _setting_json(backend, setting)
    data.update({"LastModifiedDate": now(), "LastModifiedUser": f"arn:aws:iam::{backend.account_id}:root"})
    return ActionResult({"ServiceSetting": data})


RESPONSE_METHODS: list[Callable[..., Any]] = [
    get_service_setting,
    update_service_setting,
    reset_service_setting,
]
