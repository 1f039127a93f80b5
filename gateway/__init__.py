"""fleetloop edge gateway: Mosquitto with mTLS + ACL, durable ingest, signed batches, uplink.

Modules (one concept each):
    settings   every setting and default, from CLI/env
    errors     the one exception root (GatewayError) and its kinds
    keys       where the gateway's keys live under <home>/keys
    broker_config  the Mosquitto config and ACL it writes
    broker     Mosquitto as a supervised child process
    procs      Linux process/port helpers (PDEATHSIG, /proc)
    store      SQLite: inbox, seq registry, states, spool, chain head, cursors
    seqs       the pure (device, seq) dedupe / contiguous-ack rule
    ingest     paho-mqtt session with manual ack after a durable commit
    batch      inbox -> signed, chained batch in the spool
    uplink     spool -> cloud over HTTP, deleted only on 2xx
    downlink   cloud configs -> retained MQTT messages for devices
    hint       the back-pressure hint (least reconnect delay), retained for every device
    status     local HTTP status endpoint (/status, /metrics) and run.json
    metrics    the status as Prometheus text
    tech_credential  the technician's token the status endpoint requires
    tech_identity    the technician's MQTT certificate (gateway ping)
    logfile    the gateway's own rotated log file
    diag       reads the status (live or from disk) and renders it for technicians
    diag_problems    pure checks: status dict -> problems, each with what to check
    diag_render      the screen: problems first, then the detail and the devices table
    diag_offline     a stopped gateway's status, read from its files
    diag_local       certificates, disk and clock, read on the box
    support_bundle   diag --bundle: status, logs, config, tables, secrets redacted
    ping       one MQTT round trip to a device as the technician
    backoff    capped, jittered exponential backoff
    worker     a thread that runs one part and restarts it if it crashes
    app        composition root
    cli        typer commands `run`, `register`, `diag` and `ping`
"""
