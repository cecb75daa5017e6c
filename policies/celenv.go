package policies

import (
	"fmt"
	"reflect"
	"sort"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
)

// The CEL variables are declared as object types with fixed, typed fields
// rather than as map(string, dyn): a misspelt field or a comparison between
// a string and an int is then a compile error at load, not a silent false at
// three in the morning. Field values are read straight from the Go structs
// through FieldType.GetFrom, without reflection, and cached per decision.
const (
	typeIndicator   = "warden.Indicator"
	typeObservables = "warden.Observables"
	typeGateway     = "warden.Gateway"
	typeSite        = "warden.Site"
	typeContext     = "warden.Context"
)

// Variable names visible to match expressions.
const (
	varIndicator = "indicator"
	varGateway   = "gateway"
	varSite      = "site"
	varContext   = "context"
)

// fieldID indexes the per-decision cache of field values.
type fieldID int

const (
	fIndKind fieldID = iota
	fIndGateway
	fIndSeverity
	fIndSeverityRank
	fIndConfidence
	fIndSource
	fIndSummary
	fIndStatus
	fIndFingerprint
	fIndLabels
	fIndObservables
	fIndObservedAt
	fObsIPs
	fObsDomains
	fObsHashes
	fGwID
	fGwSite
	fGwVM
	fGwHostname
	fGwAddresses
	fGwManagementNetworks
	fSiteName
	fSiteTimeZone
	fSiteNetworks
	fCtxBusinessHours
	fCtxNow
	fCtxLocalHour
	fCtxWeekday
	fCtxPosture
	fCtxOpenIncidents
	fCtxRecentIndicators
	numFields
)

// objectKind indexes the five object values of a decision.
type objectKind int

const (
	objIndicator objectKind = iota
	objObservables
	objGateway
	objSite
	objContext
	numObjects
)

// fieldDef describes one field of one object type.
type fieldDef struct {
	id   fieldID
	name string
	typ  *cel.Type
	get  func(st *evalState) ref.Val
}

// objectDef is one declared object type.
type objectDef struct {
	name   string
	typ    *types.Type
	fields map[string]*types.FieldType
	names  []string
}

func weekdayName(d time.Weekday) string {
	return [...]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}[d]
}

func str(s string) ref.Val { return types.String(s) }

// objectDefs builds the declared object types and their fields.
func objectDefs() map[string]*objectDef {
	list := func(get func(st *evalState) []string) func(st *evalState) ref.Val {
		return func(st *evalState) ref.Val { return types.NewStringList(st.adapter, get(st)) }
	}
	defs := map[string][]fieldDef{
		typeIndicator: {
			{fIndKind, "kind", cel.StringType, func(st *evalState) ref.Val { return str(string(st.in.Indicator.Kind)) }},
			{fIndGateway, "gateway", cel.StringType, func(st *evalState) ref.Val { return str(st.in.Indicator.Gateway) }},
			{fIndSeverity, "severity", cel.StringType, func(st *evalState) ref.Val { return str(string(st.in.Indicator.Severity)) }},
			{fIndSeverityRank, "severity_rank", cel.IntType, func(st *evalState) ref.Val { return types.Int(st.in.Indicator.Severity.Rank()) }},
			{fIndConfidence, "confidence", cel.DoubleType, func(st *evalState) ref.Val { return types.Double(st.in.Indicator.Confidence) }},
			{fIndSource, "source", cel.StringType, func(st *evalState) ref.Val { return str(st.in.Indicator.Source) }},
			{fIndSummary, "summary", cel.StringType, func(st *evalState) ref.Val { return str(st.in.Indicator.Summary) }},
			{fIndStatus, "status", cel.StringType, func(st *evalState) ref.Val { return str(st.status()) }},
			{fIndFingerprint, "fingerprint", cel.StringType, func(st *evalState) ref.Val { return str(st.in.Indicator.Fingerprint) }},
			{fIndLabels, "labels", cel.MapType(cel.StringType, cel.StringType), func(st *evalState) ref.Val {
				return types.NewStringStringMap(st.adapter, st.in.Indicator.Labels)
			}},
			{fIndObservables, "observables", cel.ObjectType(typeObservables), func(st *evalState) ref.Val { return &st.objs[objObservables] }},
			{fIndObservedAt, "observed_at", cel.TimestampType, func(st *evalState) ref.Val { return types.Timestamp{Time: st.at} }},
		},
		typeObservables: {
			{fObsIPs, "ips", cel.ListType(cel.StringType), list(func(st *evalState) []string { return st.in.Indicator.Observables.IPs })},
			{fObsDomains, "domains", cel.ListType(cel.StringType), list(func(st *evalState) []string { return st.in.Indicator.Observables.Domains })},
			{fObsHashes, "hashes", cel.ListType(cel.StringType), list(func(st *evalState) []string { return st.in.Indicator.Observables.Hashes })},
		},
		typeGateway: {
			{fGwID, "id", cel.StringType, func(st *evalState) ref.Val { return str(st.in.Gateway.ID) }},
			{fGwSite, "site", cel.StringType, func(st *evalState) ref.Val { return str(st.in.Gateway.Site) }},
			{fGwVM, "vm", cel.StringType, func(st *evalState) ref.Val { return str(st.in.Gateway.VM) }},
			{fGwHostname, "hostname", cel.StringType, func(st *evalState) ref.Val { return str(st.in.Gateway.Hostname) }},
			{fGwAddresses, "addresses", cel.ListType(cel.StringType), list(func(st *evalState) []string { return st.in.Gateway.Addresses })},
			{fGwManagementNetworks, "management_networks", cel.ListType(cel.StringType), list(func(st *evalState) []string { return st.in.Gateway.ManagementNetworks })},
		},
		typeSite: {
			{fSiteName, "name", cel.StringType, func(st *evalState) ref.Val { return str(st.in.Site.Name) }},
			{fSiteTimeZone, "time_zone", cel.StringType, func(st *evalState) ref.Val { return str(st.local.Location().String()) }},
			{fSiteNetworks, "networks", cel.ListType(cel.StringType), list(func(st *evalState) []string { return st.in.Site.Networks })},
		},
		typeContext: {
			{fCtxBusinessHours, "business_hours", cel.BoolType, func(st *evalState) ref.Val { return types.Bool(st.businessHours) }},
			{fCtxNow, "now", cel.TimestampType, func(st *evalState) ref.Val { return types.Timestamp{Time: st.in.Context.Now} }},
			{fCtxLocalHour, "local_hour", cel.IntType, func(st *evalState) ref.Val { return types.Int(st.local.Hour()) }},
			{fCtxWeekday, "weekday", cel.StringType, func(st *evalState) ref.Val { return str(weekdayName(st.local.Weekday())) }},
			{fCtxPosture, "posture", cel.StringType, func(st *evalState) ref.Val { return str(st.posture()) }},
			{fCtxOpenIncidents, "open_incidents", cel.IntType, func(st *evalState) ref.Val { return types.Int(st.in.Context.OpenIncidents) }},
			{fCtxRecentIndicators, "recent_indicators", cel.IntType, func(st *evalState) ref.Val { return types.Int(st.in.Context.RecentIndicators) }},
		},
	}
	out := make(map[string]*objectDef, len(defs))
	for name, fields := range defs {
		od := &objectDef{name: name, typ: types.NewObjectType(name), fields: map[string]*types.FieldType{}}
		for _, f := range fields {
			get := cachedGetter(f.id, f.get)
			od.fields[f.name] = &types.FieldType{
				Type:    f.typ,
				GetFrom: get,
				IsSet: func(target any) bool {
					v, err := get(target)
					if err != nil {
						return false
					}
					if z, ok := v.(traits.Zeroer); ok {
						return !z.IsZeroValue()
					}
					return true
				},
			}
			od.names = append(od.names, f.name)
		}
		sort.Strings(od.names)
		out[name] = od
	}
	return out
}

// cachedGetter computes a field at most once per decision.
func cachedGetter(id fieldID, get func(st *evalState) ref.Val) ref.FieldGetter {
	return func(target any) (any, error) {
		st, ok := target.(*evalState)
		if !ok {
			return nil, fmt.Errorf("reading field of %T: not a policy input", target)
		}
		if v := st.cache[id]; v != nil {
			return v, nil
		}
		v := get(st)
		st.cache[id] = v
		return v, nil
	}
}

// objectVal is the CEL value of indicator, gateway, site, context and
// indicator.observables. All five point at the same evalState; the type tells
// the fields apart.
type objectVal struct {
	typ *types.Type
	st  *evalState
}

var _ ref.Val = (*objectVal)(nil)

func (o *objectVal) ConvertToNative(reflect.Type) (any, error) {
	return nil, fmt.Errorf("converting %s to a native value: unsupported", o.typ.TypeName())
}

func (o *objectVal) ConvertToType(t ref.Type) ref.Val {
	if t == types.TypeType {
		return o.typ
	}
	return types.NewErr("type conversion error from '%s' to '%s'", o.typ.TypeName(), t.TypeName())
}

func (o *objectVal) Equal(other ref.Val) ref.Val {
	p, ok := other.(*objectVal)
	if !ok {
		return types.False
	}
	return types.Bool(p.typ == o.typ && p.st == o.st)
}

func (o *objectVal) Type() ref.Type { return o.typ }

// Value returns the evaluation state: field getters read from it.
func (o *objectVal) Value() any { return o.st }

// typeProvider declares the Warden object types and delegates everything
// else to the provider it wraps.
type typeProvider struct {
	base    types.Provider
	objects map[string]*objectDef
}

var _ types.Provider = (*typeProvider)(nil)

func (p *typeProvider) EnumValue(name string) ref.Val { return p.base.EnumValue(name) }

func (p *typeProvider) FindIdent(name string) (ref.Val, bool) { return p.base.FindIdent(name) }

func (p *typeProvider) FindStructType(name string) (*types.Type, bool) {
	if od, ok := p.objects[name]; ok {
		return types.NewTypeTypeWithParam(od.typ), true
	}
	return p.base.FindStructType(name)
}

func (p *typeProvider) FindStructFieldNames(name string) ([]string, bool) {
	if od, ok := p.objects[name]; ok {
		return append([]string(nil), od.names...), true
	}
	return p.base.FindStructFieldNames(name)
}

func (p *typeProvider) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	if od, ok := p.objects[name]; ok {
		ft, ok := od.fields[field]
		return ft, ok
	}
	return p.base.FindStructFieldType(name, field)
}

func (p *typeProvider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := p.objects[name]; ok {
		return types.NewErr("%s values are provided by Warden and cannot be constructed", name)
	}
	return p.base.NewValue(name, fields)
}

// runtime is what evaluation needs from the environment the policies were
// compiled in.
type runtime struct {
	adapter  types.Adapter
	objTypes [numObjects]*types.Type
	// states recycles evaluation states: each is about a kilobyte, and a
	// decision should not cost one in garbage.
	states sync.Pool
}

func newRuntime(adapter types.Adapter) *runtime {
	rt := &runtime{adapter: adapter}
	for k, name := range [numObjects]string{typeIndicator, typeObservables, typeGateway, typeSite, typeContext} {
		rt.objTypes[k] = types.NewObjectType(name)
	}
	rt.states.New = func() any {
		st := &evalState{adapter: rt.adapter}
		for k, t := range rt.objTypes {
			st.objs[k] = objectVal{typ: t, st: st}
		}
		return st
	}
	return rt
}

// acquire returns an evaluation state for in; release it when done.
func (rt *runtime) acquire(in *Input) *evalState {
	st := rt.states.Get().(*evalState)
	st.init(in)
	return st
}

// release clears the state, so that the pool holds no reference to the
// input, and returns it to the pool.
func (rt *runtime) release(st *evalState) {
	st.in = Input{}
	st.cache = [numFields]ref.Val{}
	rt.states.Put(st)
}

// newEnv builds the CEL environment every policy is compiled in.
func newEnv() (*cel.Env, error) {
	objects := objectDefs()
	withTypes := func(e *cel.Env) (*cel.Env, error) {
		return cel.CustomTypeProvider(&typeProvider{base: e.CELTypeProvider(), objects: objects})(e)
	}
	env, err := cel.NewEnv(
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Sets(),
		ext.Network(),
		withTypes,
		cel.Variable(varIndicator, cel.ObjectType(typeIndicator)),
		cel.Variable(varGateway, cel.ObjectType(typeGateway)),
		cel.Variable(varSite, cel.ObjectType(typeSite)),
		cel.Variable(varContext, cel.ObjectType(typeContext)),
	)
	if err != nil {
		return nil, fmt.Errorf("creating the CEL environment: %w", err)
	}
	return env, nil
}

// evalState is the activation of one decision: the input, the values
// derived from it once, and the lazily filled field cache. It is built once
// per Decide and shared by every policy evaluated.
type evalState struct {
	in            Input
	adapter       types.Adapter
	at            time.Time // when the indicator was observed
	local         time.Time // at, in the site's time zone
	businessHours bool
	objs          [numObjects]objectVal
	cache         [numFields]ref.Val
}

func (st *evalState) init(in *Input) {
	st.in = *in
	st.at = in.Indicator.ObservedAt
	if st.at.IsZero() {
		st.at = in.Context.Now
	}
	st.local = st.at.In(in.Site.Location())
	st.businessHours = in.Site.InBusinessHours(st.at)
}

func (st *evalState) status() string {
	if st.in.Indicator.Status == "" {
		return "firing"
	}
	return st.in.Indicator.Status
}

func (st *evalState) posture() string {
	if st.in.Context.Posture == "" {
		return "normal"
	}
	return st.in.Context.Posture
}

// ResolveName implements interpreter.Activation.
func (st *evalState) ResolveName(name string) (any, bool) {
	switch name {
	case varIndicator:
		return &st.objs[objIndicator], true
	case varGateway:
		return &st.objs[objGateway], true
	case varSite:
		return &st.objs[objSite], true
	case varContext:
		return &st.objs[objContext], true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (st *evalState) Parent() cel.Activation { return nil }
