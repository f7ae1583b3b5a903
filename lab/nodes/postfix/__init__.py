"""Real Postfix as a relay or mx node (`software: postfix`): the node's Postfix files are
generated, without I/O, from the same `MailServerConfig` the lab's own server follows
(`policy` says what cannot be expressed, `maincf` and `master` write main.cf and master.cf,
`maps` the lookup tables, SASL and postgrey settings, `setup` gathers them) and
`program` writes them in the container and runs Postfix in the foreground."""
