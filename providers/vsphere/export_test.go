package vsphere

import "context"

// ExpireSession logs the provider's SOAP and/or REST session out behind
// its back, the way a vCenter restart or a session timeout would.
func ExpireSession(ctx context.Context, p *Provider, soap, rest bool) error {
	if rest {
		if err := p.rest.Logout(ctx); err != nil {
			return err
		}
	}
	if soap {
		return p.sm.Logout(ctx)
	}
	return nil
}
