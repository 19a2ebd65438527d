"""The load generator for any Open Inference Protocol endpoint (closed and open loop), and the service model.

transport: one client backend per protocol (tritonclient), all the generator knows of the server.
schedule: load levels and their seeded arrival schedules, shared out over client processes.
client: the task one client process runs (a launcher places it), returning its raw request records.
profile: a level's figures from the merged records and the server's statistics, as a stored cell.
runner: the levels one after the other, each read, measured and stored.
model: the service model (SONIC's t_SONIC terms, saturation, batching) fitted and checked on held-out levels.
"""
