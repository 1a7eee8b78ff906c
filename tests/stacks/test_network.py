"""Security-critical properties of the Network stack, and the logical IDs other stacks rely on."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match

from tests.conftest import Synthesized


def resources(synthesized: Synthesized, type_: str) -> dict[str, dict[str, Any]]:
    template = synthesized.raw("Network")
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def test_vpc_and_subnet_logical_ids_are_pinned(full: Synthesized) -> None:
    """Renaming these replaces the VPC or a subnet, and everything in it: change them on purpose."""
    assert list(resources(full, "AWS::EC2::VPC")) == ["Vpc8378EB38"]
    assert sorted(resources(full, "AWS::EC2::Subnet")) == [
        "VpcPrivateSubnet1Subnet536B997A",
        "VpcPrivateSubnet2Subnet3788AAA1",
        "VpcPrivateSubnet3SubnetF258B56E",
        "VpcPublicSubnet1Subnet5C2D37C4",
        "VpcPublicSubnet2Subnet691E08A3",
        "VpcPublicSubnet3SubnetBE12F0B6",
    ]


def test_subnets_never_assign_public_ips(full: Synthesized) -> None:
    for subnet in resources(full, "AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False


def test_subnets_span_the_configured_zones(full: Synthesized) -> None:
    zones = {
        s["Properties"]["AvailabilityZone"] for s in resources(full, "AWS::EC2::Subnet").values()
    }
    assert zones == {"eu-west-1a", "eu-west-1b", "eu-west-1c"}


def test_no_nat_means_isolated_private_subnets(full: Synthesized) -> None:
    """full.toml runs the whole platform with nat_gateways = 0: nothing routes to the internet
    from the private subnets, and private work uses the VPC endpoints only."""
    assert resources(full, "AWS::EC2::NatGateway") == {}
    routes = resources(full, "AWS::EC2::Route").values()
    assert all("GatewayId" in r["Properties"] for r in routes), "only public IGW routes"


def test_example_has_one_nat_gateway(example: Synthesized) -> None:
    example.template("Network").resource_count_is("AWS::EC2::NatGateway", 1)


def test_gateway_endpoints_for_s3_and_dynamodb(full: Synthesized) -> None:
    endpoints = resources(full, "AWS::EC2::VPCEndpoint").values()
    gateways = [
        e["Properties"] for e in endpoints if e["Properties"].get("VpcEndpointType") == "Gateway"
    ]
    services = sorted(str(g["ServiceName"]) for g in gateways)
    assert len(gateways) == 2
    assert "s3" in services[1] and "dynamodb" in services[0]


def test_interface_endpoints_cover_private_workloads(full: Synthesized) -> None:
    endpoints = [
        e["Properties"]
        for e in resources(full, "AWS::EC2::VPCEndpoint").values()
        if e["Properties"].get("VpcEndpointType") == "Interface"
    ]
    names = {str(e["ServiceName"]).split(".")[-1].rstrip("\"}'") for e in endpoints}
    required = {
        "sagemaker.api",
        "sts",
        "sqs",
        "ecr.api",
        "ecr.dkr",
        "logs",
        "monitoring",
        "ssm",
        "ssmmessages",
        "ec2messages",
        "kms",
        "scheduler",  # the retraining handler's calls to EventBridge Scheduler
    }
    rendered = " ".join(str(e["ServiceName"]) for e in endpoints)
    for service in required:
        assert f".{service}" in rendered, f"no interface endpoint for {service}"
    assert names
    for endpoint in endpoints:
        assert endpoint["PrivateDnsEnabled"] is True
        assert len(endpoint["SubnetIds"]) == 3


def test_endpoint_security_group_admits_only_https_from_the_vpc(full: Synthesized) -> None:
    groups = resources(full, "AWS::EC2::SecurityGroup")
    group = next(g for k, g in groups.items() if k.startswith("EndpointsSecurityGroup"))
    assert group["Properties"]["SecurityGroupIngress"] == [
        {
            "CidrIp": "10.20.0.0/16",
            "Description": "HTTPS from workloads inside the VPC",
            "FromPort": 443,
            "IpProtocol": "tcp",
            "ToPort": 443,
        }
    ]


def test_flow_logs_capture_all_traffic_to_an_encrypted_group(full: Synthesized) -> None:
    template = full.template("Network")
    template.has_resource_properties(
        "AWS::EC2::FlowLog",
        {"ResourceType": "VPC", "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"},
    )
    flow_log = next(iter(resources(full, "AWS::EC2::FlowLog").values()))
    group_id = flow_log["Properties"]["LogGroupName"]["Ref"]
    group = full.raw("Network")["Resources"][group_id]["Properties"]
    assert group["RetentionInDays"] == 365
    assert "KmsKeyId" in group


def test_logs_key_rotates(full: Synthesized) -> None:
    full.template("Network").has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_default_security_group_is_stripped(full: Synthesized) -> None:
    full.template("Network").resource_count_is("Custom::VpcRestrictDefaultSG", 1)


def test_client_vpn_uses_mutual_tls_split_tunnel_and_logging(full: Synthesized) -> None:
    full.template("Network").has_resource_properties(
        "AWS::EC2::ClientVpnEndpoint",
        {
            "AuthenticationOptions": [
                {
                    "Type": "certificate-authentication",
                    "MutualAuthentication": {
                        "ClientRootCertificateChainArn": Match.string_like_regexp(":certificate/")
                    },
                }
            ],
            "ClientCidrBlock": "10.100.0.0/22",
            "SplitTunnel": True,
            "ConnectionLogOptions": Match.object_like({"Enabled": True}),
            "DnsServers": ["10.20.0.2"],
        },
    )
    full.template("Network").resource_count_is("AWS::EC2::ClientVpnTargetNetworkAssociation", 3)


def test_vpn_authorizes_clients_to_the_vpc_only(full: Synthesized) -> None:
    rules = resources(full, "AWS::EC2::ClientVpnAuthorizationRule")
    assert [r["Properties"]["TargetNetworkCidr"] for r in rules.values()] == ["10.20.0.0/16"]
    assert all(r["Properties"]["AuthorizeAllGroups"] is True for r in rules.values())
    assert resources(full, "AWS::EC2::ClientVpnRoute") == {}


def test_vpn_connection_log_group_is_encrypted(full: Synthesized) -> None:
    vpn = next(iter(resources(full, "AWS::EC2::ClientVpnEndpoint").values()))
    group_id = vpn["Properties"]["ConnectionLogOptions"]["CloudwatchLogGroup"]["Ref"]
    group = full.raw("Network")["Resources"][group_id]["Properties"]
    assert "KmsKeyId" in group and group["RetentionInDays"] == 365


def test_example_without_certificates_has_no_vpn(example: Synthesized) -> None:
    example.template("Network").resource_count_is("AWS::EC2::ClientVpnEndpoint", 0)


def test_bastion_is_private_imdsv2_encrypted_al2023(full: Synthesized) -> None:
    instances = resources(full, "AWS::EC2::Instance")
    assert len(instances) == 1
    bastion = next(iter(instances.values()))["Properties"]
    assert "NetworkInterfaces" not in bastion, "no public IP association"
    assert bastion["SubnetId"]["Ref"].startswith("VpcPrivateSubnet")
    assert bastion["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    assert bastion["InstanceType"] == "t4g.nano"
    assert "al2023" in str(bastion["ImageId"]) and "arm64" in str(bastion["ImageId"])
    templates = resources(full, "AWS::EC2::LaunchTemplate").values()
    assert any(
        t["Properties"]["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"
        for t in templates
    )


def test_bastion_ssh_only_from_the_vpn_endpoint(full: Synthesized) -> None:
    """Client VPN translates client addresses to its own interfaces, so the rule names its group."""
    groups = resources(full, "AWS::EC2::SecurityGroup")
    admin_id = next(k for k in groups if k.startswith("AdminAccessAdminSecurityGroup"))
    vpn_id = next(k for k in groups if k.startswith("AdminAccessVpnSecurityGroup"))
    assert "SecurityGroupIngress" not in groups[admin_id]["Properties"]
    ingress = [
        r["Properties"]
        for r in resources(full, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [admin_id, "GroupId"]}
    ]
    assert ingress == [
        {
            "Description": "SSH from administrators on the Client VPN",
            "FromPort": 22,
            "GroupId": {"Fn::GetAtt": [admin_id, "GroupId"]},
            "IpProtocol": "tcp",
            "SourceSecurityGroupId": {"Fn::GetAtt": [vpn_id, "GroupId"]},
            "ToPort": 22,
        }
    ]


def test_bastion_without_vpn_accepts_no_inbound_traffic(example: Synthesized) -> None:
    template = example.raw("Network")
    ingress = [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and "AdminAccessAdminSecurityGroup" in str(r["Properties"]["GroupId"])
    ]
    assert ingress == []


def test_admin_security_group_is_exposed(full: Synthesized) -> None:
    network = full.platform.network
    assert network.admin_security_group.node.path.endswith("AdminSecurityGroup")
    assert network.bastion.instance.connections.security_groups == [network.admin_security_group]


def test_training_jobs_reach_s3_and_ecr_over_https_and_efs_over_nfs(full: Synthesized) -> None:
    """SageMaker moves a VPC job's input, output and image through the job's own interfaces."""
    groups = resources(full, "AWS::EC2::SecurityGroup")
    training = next(g for k, g in groups.items() if k.startswith("TrainingSecurityGroup"))
    egress = {
        (r.get("CidrIp"), r["FromPort"]) for r in training["Properties"]["SecurityGroupEgress"]
    }
    assert egress == {("0.0.0.0/0", 443), ("10.20.0.0/16", 2049)}
