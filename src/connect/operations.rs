//! [`ConnectApi`] for [`SdkConnect`]: each operation as aws-sdk-connect calls it, through
//! [`SdkConnect::call`] (rate limiter, retries, metrics).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_connect::types::{SecurityProfileSearchCriteria, StringComparisonType, StringCondition};
use aws_smithy_types::date_time::Format as DateTimeFormat;

use super::sdk::SdkConnect;
use super::{ConnectApi, ConnectError, ErrorClass, convert};
use crate::api::SecurityProfileSpec;
use crate::constraints::{LIST_MAX_RESULTS, SEARCH_MAX_RESULTS};
use crate::domain::{
    FoundProfile, ListedMembers, ListedProfile, Listing, ObservedProfile, ProfileRef, ProfileSummary, ProfileUpdate,
    Target, content_digest,
};

impl SdkConnect {
    async fn list_members(&self, target: &Target, id: &str) -> Result<ListedMembers, ConnectError> {
        let inst = &target.instance_id;
        let permissions = self
            .all_pages(target, "ListSecurityProfilePermissions", |c, token| async move {
                let req = c
                    .list_security_profile_permissions()
                    .instance_id(inst)
                    .security_profile_id(id)
                    .max_results(LIST_MAX_RESULTS);
                let page = req.set_next_token(token).send().await.map_err(ConnectError::from_sdk)?;
                Ok((page.permissions.unwrap_or_default(), page.next_token))
            })
            .await?;
        let applications = self
            .all_pages(target, "ListSecurityProfileApplications", |c, token| async move {
                let req = c
                    .list_security_profile_applications()
                    .instance_id(inst)
                    .security_profile_id(id)
                    .max_results(LIST_MAX_RESULTS);
                let page = req.set_next_token(token).send().await.map_err(ConnectError::from_sdk)?;
                let items = page.applications.unwrap_or_default().iter().map(convert::from_sdk_application).collect();
                Ok((items, page.next_token))
            })
            .await?;
        let modules = self
            .all_pages(target, "ListSecurityProfileFlowModules", |c, token| async move {
                let req = c
                    .list_security_profile_flow_modules()
                    .instance_id(inst)
                    .security_profile_id(id)
                    .max_results(LIST_MAX_RESULTS);
                let page = req.set_next_token(token).send().await.map_err(ConnectError::from_sdk)?;
                let items =
                    page.allowed_flow_modules.unwrap_or_default().iter().map(convert::from_sdk_flow_module).collect();
                Ok((items, page.next_token))
            })
            .await?;
        let agents = self
            .all_pages(target, "ListSecurityProfileAIAgents", |c, token| async move {
                let req = c
                    .list_security_profile_ai_agents()
                    .instance_id(inst)
                    .security_profile_id(id)
                    .max_results(LIST_MAX_RESULTS);
                let page = req.set_next_token(token).send().await.map_err(ConnectError::from_sdk)?;
                let items = page.allowed_ai_agents.unwrap_or_default().iter().map(convert::from_sdk_ai_agent).collect();
                Ok((items, page.next_token))
            })
            .await?;
        Ok(ListedMembers::new(permissions, &applications, &modules, &agents))
    }
}

impl ConnectApi for SdkConnect {
    async fn list_instance(&self, target: &Target, search: bool) -> Result<Listing, ConnectError> {
        let inst = &target.instance_id;
        let summaries = self
            .all_pages(target, "ListSecurityProfiles", |c, token| async move {
                let req = c.list_security_profiles().instance_id(inst).max_results(LIST_MAX_RESULTS);
                let page = req.set_next_token(token).send().await.map_err(ConnectError::from_sdk)?;
                let items = page.security_profile_summary_list.unwrap_or_default().into_iter().filter_map(|s| {
                    let listed = ListedProfile {
                        last_modified: s.last_modified_time.and_then(|t| t.fmt(DateTimeFormat::DateTime).ok()),
                        content: None,
                    };
                    Some((s.id?, listed))
                });
                Ok((items.collect::<Vec<_>>(), page.next_token))
            })
            .await?;
        let mut profiles: HashMap<String, ListedProfile> = summaries.into_iter().collect();
        if search {
            let found = self
                .all_pages(target, "SearchSecurityProfiles", |c, token| async move {
                    let req = c.search_security_profiles().instance_id(inst).max_results(SEARCH_MAX_RESULTS);
                    let page = req.set_next_token(token).send().await.map_err(ConnectError::from_sdk)?;
                    let items = page
                        .security_profiles
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|p| {
                            let tags = p.tags.unwrap_or_default().into_iter().collect();
                            Some((p.id?, content_digest(p.description.as_deref().unwrap_or_default(), &tags)))
                        })
                        .collect::<Vec<_>>();
                    Ok((items, page.next_token))
                })
                .await?;
            for (id, content) in found {
                if let Some(p) = profiles.get_mut(&id) {
                    p.content = Some(content);
                }
            }
        }
        Ok(Listing { profiles, searched: search })
    }

    async fn probe_instance(&self, target: &Target) -> Result<(), ConnectError> {
        self.call(target, "ListSecurityProfiles", |c| async move {
            c.list_security_profiles()
                .instance_id(&target.instance_id)
                .max_results(1)
                .send()
                .await
                .map_err(ConnectError::from_sdk)
        })
        .await?;
        Ok(())
    }

    async fn list_profiles(&self, target: &Target) -> Result<Vec<ProfileSummary>, ConnectError> {
        let inst = &target.instance_id;
        self.all_pages(target, "ListSecurityProfiles", |c, token| async move {
            let req = c.list_security_profiles().instance_id(inst).max_results(LIST_MAX_RESULTS);
            let page = req.set_next_token(token).send().await.map_err(ConnectError::from_sdk)?;
            let summaries = page.security_profile_summary_list.unwrap_or_default().into_iter();
            let items =
                summaries.filter_map(|s| Some(ProfileSummary { id: s.id?, arn: s.arn?, name: s.name? })).collect();
            Ok((items, page.next_token))
        })
        .await
    }

    async fn create_profile(
        &self,
        target: &Target,
        spec: &SecurityProfileSpec,
        tags: &BTreeMap<String, String>,
    ) -> Result<ProfileRef, ConnectError> {
        let out = self
            .call(target, "CreateSecurityProfile", |c| async move {
                convert::create_request(c.create_security_profile(), target, spec, tags)
                    .send()
                    .await
                    .map_err(ConnectError::from_sdk)
            })
            .await?;
        match (out.security_profile_id, out.security_profile_arn) {
            (Some(id), Some(arn)) => Ok(ProfileRef { id, arn }),
            _ => Err(ConnectError::new(
                ErrorClass::Recoverable,
                "IncompleteResponse",
                "CreateSecurityProfile returned no ID or ARN",
            )),
        }
    }

    async fn find_profile_by_name(&self, target: &Target, name: &str) -> Result<Option<FoundProfile>, ConnectError> {
        let criteria = SecurityProfileSearchCriteria::builder()
            .string_condition(
                StringCondition::builder()
                    .field_name("name")
                    .value(name)
                    .comparison_type(StringComparisonType::Exact)
                    .build(),
            )
            .build();
        let out = self
            .call(target, "SearchSecurityProfiles", |c| {
                let criteria = criteria.clone();
                async move {
                    c.search_security_profiles()
                        .instance_id(&target.instance_id)
                        .search_criteria(criteria)
                        .max_results(10)
                        .send()
                        .await
                        .map_err(ConnectError::from_sdk)
                }
            })
            .await?;
        let found =
            out.security_profiles.unwrap_or_default().into_iter().find(|p| p.security_profile_name() == Some(name));
        Ok(found.and_then(|p| {
            Some(FoundProfile {
                profile: ProfileRef { id: p.id?, arn: p.arn? },
                tags: p.tags.unwrap_or_default().into_iter().collect(),
            })
        }))
    }

    async fn observe_profile(
        &self,
        target: &Target,
        id: &str,
        read_members: bool,
    ) -> Result<ObservedProfile, ConnectError> {
        let out = self
            .call(target, "DescribeSecurityProfile", |c| async move {
                c.describe_security_profile()
                    .instance_id(&target.instance_id)
                    .security_profile_id(id)
                    .send()
                    .await
                    .map_err(ConnectError::from_sdk)
            })
            .await?;
        let p = out.security_profile.ok_or_else(|| {
            ConnectError::new(
                ErrorClass::Recoverable,
                "IncompleteResponse",
                "DescribeSecurityProfile returned no profile",
            )
        })?;
        let mut state = convert::described_state(&p);
        if read_members {
            state.listed = Some(self.list_members(target, id).await?);
        }
        Ok(ObservedProfile {
            name: p.security_profile_name.unwrap_or_default(),
            arn: p.arn.unwrap_or_default(),
            last_modified: p.last_modified_time.and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
            tags: p.tags.unwrap_or_default().into_iter().collect(),
            state,
        })
    }

    async fn update_profile(&self, target: &Target, id: &str, update: &ProfileUpdate) -> Result<(), ConnectError> {
        self.call(target, "UpdateSecurityProfile", |c| async move {
            let builder = c.update_security_profile().instance_id(&target.instance_id).security_profile_id(id);
            convert::update_request(builder, update).send().await.map_err(ConnectError::from_sdk)
        })
        .await?;
        Ok(())
    }

    async fn tag_profile(
        &self,
        target: &Target,
        arn: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), ConnectError> {
        self.call(target, "TagResource", |c| async move {
            c.tag_resource()
                .resource_arn(arn)
                .set_tags(Some(tags.clone().into_iter().collect()))
                .send()
                .await
                .map_err(ConnectError::from_sdk)
        })
        .await?;
        Ok(())
    }

    async fn untag_profile(&self, target: &Target, arn: &str, keys: &[String]) -> Result<(), ConnectError> {
        self.call(target, "UntagResource", |c| async move {
            c.untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(keys.to_vec()))
                .send()
                .await
                .map_err(ConnectError::from_sdk)
        })
        .await?;
        Ok(())
    }

    async fn delete_profile(&self, target: &Target, id: &str) -> Result<(), ConnectError> {
        self.call(target, "DeleteSecurityProfile", |c| async move {
            c.delete_security_profile()
                .instance_id(&target.instance_id)
                .security_profile_id(id)
                .send()
                .await
                .map_err(ConnectError::from_sdk)
        })
        .await?;
        Ok(())
    }
}
