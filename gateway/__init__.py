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
    status     local HTTP status endpoint and run.json
    diag       reads and renders the status for technicians
    backoff    capped, jittered exponential backoff
    worker     a thread that runs one part and restarts it if it crashes
    app        composition root
    cli        typer commands `run` and `diag`
"""
