//! `vessel features`: prints [`vessel::features::document`] (the OCI
//! runtime-features document, the JSON shape of `runc features`).

pub fn run(cli: &super::Cli) -> anyhow::Result<u8> {
    let config = vessel::isolation::RuntimeConfig::load(cli.config.as_deref())
        .map_err(anyhow::Error::msg)?;
    let doc = vessel::features::document(&config, cli.isolation);
    let json = vessel::features::to_json(&doc);
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(0)
}
