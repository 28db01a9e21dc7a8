-- Where each node's control plane answers, so one node can gather the others' logs.
ALTER TABLE nodes ADD COLUMN admin_url TEXT;
