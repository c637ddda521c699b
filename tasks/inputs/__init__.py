"""The inputs stage: what decides an image's content. Ansible's dependencies as Ansible finds
them, requirements installed by ansible-galaxy, the read audit that checks them, manifests."""
