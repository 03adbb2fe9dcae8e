//! Default Host Management Configuration (DHMC) opt-in: make the account's service setting
//! `/ssm/managed-instance/default-ec2-instance-management-role` hold the stack's role name.
//!
//! SSM User Guide, "Default Host Management Configuration": turning DHMC on is setting that
//! service setting to the name of an IAM role (UpdateServiceSetting, SSM API Reference: "For
//! /ssm/managed-instance/default-ec2-instance-management-role, enter the name of an IAM
//! role"); the caller needs `ssm:GetServiceSetting`/`ssm:UpdateServiceSetting` on the setting
//! and `iam:PassRole` on the role. The setting is read first and written only when it differs,
//! so a second run makes no write.

use super::coverage::DHMC_SETTING_ID;
use super::{AwsError, CallLog, Service};

/// What the setting holds compared with the wanted role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingState {
    /// Already the wanted role: nothing to do.
    InPlace,
    /// Holds something else (`$None` = DHMC off, or another role).
    Differs { current: String },
}

/// The plan line for setting the DHMC service setting to `role`.
pub fn change_line(role: &str, current: &str) -> String {
    format!("~ service setting {DHMC_SETTING_ID} = {role} (was {current})")
}

/// GetServiceSetting: does the setting already hold `role`?
pub async fn check(
    ssm: &aws_sdk_ssm::Client,
    role: &str,
    calls: &CallLog,
) -> Result<SettingState, AwsError> {
    calls.record("GetServiceSetting");
    let out = ssm
        .get_service_setting()
        .setting_id(DHMC_SETTING_ID)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(Service::Ssm, "GetServiceSetting", e))?;
    let current = out
        .service_setting()
        .and_then(|s| s.setting_value())
        .unwrap_or_default();
    Ok(if current == role {
        SettingState::InPlace
    } else {
        SettingState::Differs {
            current: current.to_string(),
        }
    })
}

/// UpdateServiceSetting: set the DHMC setting to `role` (a role name, not an ARN).
pub async fn set(ssm: &aws_sdk_ssm::Client, role: &str, calls: &CallLog) -> Result<(), AwsError> {
    calls.record("UpdateServiceSetting");
    ssm.update_service_setting()
        .setting_id(DHMC_SETTING_ID)
        .setting_value(role)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk(Service::Ssm, "UpdateServiceSetting", e).on(&[role]))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_line_names_the_setting_the_role_and_what_it_was() {
        assert_eq!(
            change_line("patchpilot-DefaultHostManagementRole-ABC", "$None"),
            "~ service setting /ssm/managed-instance/default-ec2-instance-management-role \
             = patchpilot-DefaultHostManagementRole-ABC (was $None)"
        );
    }
}
