"""Seeds and re-tags resources in a moto server through the AWS APIs (boto3).

Reads one JSON command on stdin:
  {"endpoint": URL, "region": R, "create": [{"kind": "ec2"|"s3"|"lambda", "name": N, "tags": {...}}, ...]}
  {"endpoint": URL, "region": R, "retag": {"arns": [...], "tags": {...}}}
Prints the ARNs created, one per line.
"""
import io, json, sys, zipfile
import boto3

cmd = json.load(sys.stdin)
kw = dict(endpoint_url=cmd["endpoint"], region_name=cmd["region"],
          aws_access_key_id="testing", aws_secret_access_key="testing")
ec2 = boto3.client("ec2", **kw)
s3 = boto3.client("s3", **kw)
lam = boto3.client("lambda", **kw)
iam = boto3.client("iam", **kw)
role_arn = None

def role():
    global role_arn
    if role_arn is None:
        try:
            role_arn = iam.get_role(RoleName="gitstate-test")["Role"]["Arn"]
        except Exception:
            doc = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                  "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            role_arn = iam.create_role(RoleName="gitstate-test", AssumeRolePolicyDocument=doc)["Role"]["Arn"]
    return role_arn

def zipped():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return 1\n")
    return buf.getvalue()

ami = None
for r in cmd.get("create", []):
    tags = r.get("tags", {})
    if r["kind"] == "ec2":
        if ami is None:
            ami = ec2.describe_images()["Images"][0]["ImageId"]
        spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
        out = ec2.run_instances(ImageId=ami, MinCount=r.get("count", 1), MaxCount=r.get("count", 1),
                                TagSpecifications=spec)
        for i in out["Instances"]:
            print("arn:aws:ec2:%s:123456789012:instance/%s" % (cmd["region"], i["InstanceId"]))
    elif r["kind"] == "s3":
        s3.create_bucket(Bucket=r["name"], CreateBucketConfiguration={"LocationConstraint": cmd["region"]})
        if tags:
            s3.put_bucket_tagging(Bucket=r["name"], Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
        print("arn:aws:s3:::%s" % r["name"])
    elif r["kind"] == "lambda":
        out = lam.create_function(FunctionName=r["name"], Runtime="python3.11", Role=role(),
                                  Handler="handler.handler", Code={"ZipFile": zipped()}, Tags=tags)
        print(out["FunctionArn"])

if "retag" in cmd:
    tags = cmd["retag"]["tags"]
    for arn in cmd["retag"]["arns"]:
        if ":instance/" in arn:
            ec2.create_tags(Resources=[arn.rsplit("/", 1)[1]], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        elif arn.startswith("arn:aws:s3:::"):
            bucket = arn.split(":::", 1)[1]
            old = {}
            try:
                old = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
            except Exception:
                pass
            old.update(tags)
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in old.items()]})
        elif ":function:" in arn:
            lam.tag_resource(Resource=arn, Tags=tags)
